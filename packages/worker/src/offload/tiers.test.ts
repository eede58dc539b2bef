// The offload tiers on a real engine (dummy:tiny, CPU): pool blocks with known bytes are evicted
// into the host tier and the disk tier and copied back into other pool blocks byte for byte.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '@kcache/engine';
import { resolveModel } from '@kcache/models';
import type { KvEvent } from '@kcache/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { decodeBlockFile, encodeBlockFile, OffloadTiers } from './tiers.js';

let engine: Engine;
let bytes: number;
const SLOTS = 8;
beforeAll(async () => {
  const probe = await Engine.load(resolveModel('dummy:tiny'), { numBlocks: 1, threads: 1 });
  bytes = probe.info().kvBytesPerBlock;
  probe.dispose();
  engine = await Engine.load(resolveModel('dummy:tiny'), { numBlocks: 32, threads: 1, hostTierBytes: SLOTS * bytes });
});
afterAll(() => engine?.dispose());

const h = (i: number) => i.toString(16).padStart(16, '0');
const data = (i: number) => Uint8Array.from({ length: bytes }, (_, j) => (i * 31 + j * 7) & 0xff);
/** Block i's bytes written into pool block `at`, then handed to the tiers as evicted. */
function evict(t: OffloadTiers, i: number, at = i % 16) {
  engine.writeBlocks([at], data(i));
  t.offload([{ block: at, hash: h(i), parent: i === 0 ? null : h(i - 1) }]);
  engine.writeBlocks([at], new Uint8Array(bytes)); // the slot is reused: the tiers must hold their own copy
}
const pool = (block: number) => Array.from(engine.readBlocks([block]));

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tiers(ramSlots: number, diskBlocks: number, events: KvEvent[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'kc-offload-'));
  dirs.push(dir);
  const t = new OffloadTiers({
    engine,
    ramSlots,
    diskDir: diskBlocks > 0 ? dir : null,
    diskBytes: diskBlocks * bytes,
    blockBytes: bytes,
    layout: 'm|f32|16|x',
    workerId: 'w/1',
    onEvent: (e) => events.push(e),
  });
  return { t, dir: join(dir, 'w_1') };
}

describe('OffloadTiers', () => {
  test('the engine has the host tier it was asked for', () => {
    expect(engine.info().hostTierSlots).toBe(SLOTS);
  });

  test('eviction order: RAM, then disk, then gone, each tier LRU; every move is an event', () => {
    const events: KvEvent[] = [];
    const { t, dir } = tiers(2, 2, events);
    for (let i = 0; i < 5; i++) evict(t, i);
    // RAM holds the two newest, disk the two before, block 0 fell off
    expect([0, 1, 2, 3, 4].map((i) => t.tierOf(h(i)))).toEqual([null, 'offload_disk', 'offload_disk', 'offload_ram', 'offload_ram']);
    expect(readdirSync(dir).sort()).toEqual([`${h(1)}.kvblock`, `${h(2)}.kvblock`]);
    expect(t.stats()).toEqual({
      offload_ram: { blocks: 2, bytes: 2 * bytes, capacityBlocks: 2 },
      offload_disk: { blocks: 2, bytes: 2 * bytes, capacityBlocks: 2 },
    });
    expect(t.counters).toMatchObject({ dropped: 1, offloaded: { offload_ram: 5, offload_disk: 3 } });
    // block 0: into RAM, moved to disk, dropped from disk
    expect(events.filter((e) => e.type !== 'cleared' && e.hashes.includes(h(0)))).toEqual([
      { type: 'stored', hashes: [h(0)], parent: null, tier: 'offload_ram' },
      { type: 'removed', hashes: [h(0)], tier: 'offload_ram' },
      { type: 'stored', hashes: [h(0)], parent: null, tier: 'offload_disk' },
      { type: 'removed', hashes: [h(0)], tier: 'offload_disk' },
    ]);
  });

  test('reload copies the leading blocks from any tier into the given pool blocks, byte for byte, and removes them', () => {
    const { t, dir } = tiers(2, 4);
    for (let i = 0; i < 5; i++) evict(t, i);
    expect(t.lookup([h(0), h(1), h(2), h(3), h(4), h(9)])).toBe(5);
    const targets = [20, 21, 22, 23, 24];
    expect(t.reload([h(0), h(1), h(2), h(3), h(4)], targets)).toEqual([
      'offload_disk',
      'offload_disk',
      'offload_disk',
      'offload_ram',
      'offload_ram',
    ]);
    targets.forEach((b, i) => {
      expect(pool(b)).toEqual(Array.from(data(i)));
    });
    expect(t.lookup([h(0)])).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
    expect(t.counters.reloaded).toEqual({ offload_ram: 2, offload_disk: 3 });
    // the freed RAM slots take new blocks
    evict(t, 7);
    expect(t.reload([h(7)], [25])).toEqual(['offload_ram']);
    expect(pool(25)).toEqual(Array.from(data(7)));
  });

  test('a reload stops at the first miss, and at the pool blocks given', () => {
    const { t } = tiers(4, 0);
    evict(t, 0);
    evict(t, 2);
    expect(t.lookup([h(0), h(1), h(2)])).toBe(1);
    expect(t.reload([h(0), h(1), h(2)], [20, 21, 22])).toEqual(['offload_ram']);
    expect(t.tierOf(h(2))).toBe('offload_ram');
    expect(t.reload([h(2)], [])).toEqual([]);
    expect(t.tierOf(h(2))).toBe('offload_ram');
  });

  test('promote reads disk blocks into RAM ahead of admission; a reload still counts them as disk reloads', async () => {
    const events: KvEvent[] = [];
    const { t, dir } = tiers(3, 8, events);
    for (let i = 0; i < 6; i++) evict(t, i); // 0..2 on disk, 3..5 in RAM
    const file2 = join(dir, `${h(2)}.kvblock`);
    writeFileSync(file2, readFileSync(file2).subarray(0, 20));
    expect(await t.promote([h(0), h(1), h(2), h(3)])).toBe(2); // block 2 fails its check: stops there
    expect([0, 1, 2].map((i) => t.tierOf(h(i)))).toEqual(['offload_ram', 'offload_ram', null]);
    expect(t.counters.corrupt).toBe(1);
    expect(t.reload([h(0), h(1)], [20, 21])).toEqual(['offload_disk', 'offload_disk']);
    expect(pool(21)).toEqual(Array.from(data(1)));
    // each move is in the event stream: removed from disk, stored in RAM, removed at the reload
    expect(events.filter((e) => e.type !== 'cleared' && e.hashes[0] === h(0)).slice(-3)).toEqual([
      { type: 'removed', hashes: [h(0)], tier: 'offload_disk' },
      { type: 'stored', hashes: [h(0)], parent: null, tier: 'offload_ram' },
      { type: 'removed', hashes: [h(0)], tier: 'offload_ram' },
    ]);
    // without a RAM tier there is nowhere to promote to
    const diskOnly = tiers(0, 4).t;
    evict(diskOnly, 0);
    expect(await diskOnly.promote([h(0)])).toBe(0);
  });

  test('a corrupt, truncated, missing or foreign disk file is a miss (recomputed), never data', () => {
    const { t, dir } = tiers(0, 8);
    for (let i = 0; i < 5; i++) evict(t, i);
    const file = (i: number) => join(dir, `${h(i)}.kvblock`);
    const flipped = readFileSync(file(1));
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 3) ^ 0x40, flipped.length - 3); // one bit of the data
    writeFileSync(file(1), flipped);
    expect(t.reload([h(0), h(1), h(2)], [20, 21, 22])).toEqual(['offload_disk']);
    expect(t.counters.corrupt).toBe(1);
    expect(t.tierOf(h(1))).toBe(null); // dropped with its file
    writeFileSync(file(2), readFileSync(file(2)).subarray(0, 30));
    expect(t.reload([h(2)], [22])).toEqual([]);
    rmSync(file(3));
    expect(t.reload([h(3)], [23])).toEqual([]);
    expect(t.counters.corrupt).toBe(3);
    // a file of another pool layout (another model or KV dtype) under the right name
    writeFileSync(file(4), encodeBlockFile({ hash: h(4), parent: null, data: data(4) }, 'other-model|f16|16|x'));
    expect(t.reload([h(4)], [24])).toEqual([]);
    expect(t.counters.corrupt).toBe(4);
  });

  test('block files: the header names layout, hash and length; the checksum covers the data', () => {
    const b = { hash: h(7), parent: null, data: Uint8Array.from({ length: 64 }, (_, j) => j) };
    const f = encodeBlockFile(b, 'L');
    expect(Array.from(decodeBlockFile(f, b.hash, 'L', 64) as Uint8Array)).toEqual(Array.from(b.data));
    expect(decodeBlockFile(f, h(8), 'L', 64)).toBeNull();
    expect(decodeBlockFile(f, b.hash, 'L2', 64)).toBeNull();
    expect(decodeBlockFile(f, b.hash, 'L', 65)).toBeNull();
    expect(decodeBlockFile(Buffer.from('not a block file'), b.hash, 'L', 64)).toBeNull();
  });

  test('without a RAM tier blocks go straight to disk; without either nothing is enabled', () => {
    const { t } = tiers(0, 2);
    expect(t.enabled).toBe(true);
    evict(t, 0);
    expect(t.tierOf(h(0))).toBe('offload_disk');
    expect(tiers(0, 0).t.enabled).toBe(false);
  });

  test('snapshot lists every tier with parents; peek leaves a block where it is; close removes the disk files', () => {
    const { t, dir } = tiers(1, 2);
    evict(t, 0);
    evict(t, 1);
    expect(t.snapshot()).toEqual([
      { tier: 'offload_ram', blocks: [{ hash: h(1), parent: h(0) }] },
      { tier: 'offload_disk', blocks: [{ hash: h(0), parent: null }] },
    ]);
    expect(Array.from(t.peek(h(0)) as Uint8Array)).toEqual(Array.from(data(0)));
    expect(Array.from(t.peek(h(1)) as Uint8Array)).toEqual(Array.from(data(1)));
    expect(t.tierOf(h(0))).toBe('offload_disk');
    expect(t.tierOf(h(1))).toBe('offload_ram');
    t.close();
    expect(() => readdirSync(dir)).toThrow();
  });

  test("the engine's host tier refuses bad input with the field named", () => {
    expect(() => engine.offloadToHost([0, 1], [0])).toThrow(/offloadToHost\(blocks, slots\): the arrays differ in length/);
    expect(() => engine.reloadFromHost([0], [99])).toThrow(/block 99 is outside 0\.\.31/);
    expect(() => engine.readHostSlots([-1])).toThrow(/host tier slot -1 is outside/);
    expect(() => engine.writeHostSlots([0], new Uint8Array(3))).toThrow(new RegExp(`holds 3 bytes, 1 slots need ${bytes}`));
  });

  test('a RAM tier larger than the engine host tier fails on the slot, naming it', () => {
    const { t } = tiers(SLOTS + 1, 0);
    for (let i = 0; i < SLOTS; i++) evict(t, i);
    expect(() => evict(t, SLOTS)).toThrow(new RegExp(`host tier slot ${SLOTS} is outside 0\\.\\.${SLOTS - 1}`));
  });
});
