import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KvEvent } from '@kcache/protocol';
import { afterEach, describe, expect, test } from 'vitest';
import { decodeBlockFile, encodeBlockFile, OffloadTiers } from './tiers.js';

const BYTES = 64;
const block = (i: number) => ({
  hash: i.toString(16).padStart(16, '0'),
  parent: i === 0 ? null : (i - 1).toString(16).padStart(16, '0'),
  data: Uint8Array.from({ length: BYTES }, (_, j) => (i * 31 + j) & 0xff),
});
const h = (i: number) => block(i).hash;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tiers(ramBlocks: number, diskBlocks: number, events: KvEvent[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'kc-offload-'));
  dirs.push(dir);
  const t = new OffloadTiers({
    ramBytes: ramBlocks * BYTES,
    diskDir: diskBlocks > 0 ? dir : null,
    diskBytes: diskBlocks * BYTES,
    blockBytes: BYTES,
    layout: 'm|f16|16|64',
    workerId: 'w/1',
    onEvent: (e) => events.push(e),
  });
  return { t, dir: join(dir, 'w_1') };
}

describe('OffloadTiers', () => {
  test('eviction order: RAM, then disk, then gone, each tier LRU; every move is an event', () => {
    const events: KvEvent[] = [];
    const { t, dir } = tiers(2, 2, events);
    for (let i = 0; i < 5; i++) t.offload([block(i)]);
    // RAM holds the two newest, disk the two before, block 0 fell off
    expect([0, 1, 2, 3, 4].map((i) => t.tierOf(h(i)))).toEqual([null, 'offload_disk', 'offload_disk', 'offload_ram', 'offload_ram']);
    expect(readdirSync(dir).sort()).toEqual([`${h(1)}.kvblock`, `${h(2)}.kvblock`]);
    expect(t.stats()).toEqual({
      offload_ram: { blocks: 2, bytes: 2 * BYTES, capacityBlocks: 2 },
      offload_disk: { blocks: 2, bytes: 2 * BYTES, capacityBlocks: 2 },
    });
    expect(t.counters).toMatchObject({ dropped: 1, offloaded: { offload_ram: 5, offload_disk: 3 } });
    // block 0: into RAM, moved to disk, dropped from disk
    const of0 = events.filter((e) => e.type !== 'cleared' && e.hashes.includes(h(0)));
    expect(of0).toEqual([
      { type: 'stored', hashes: [h(0)], parent: null, tier: 'offload_ram' },
      { type: 'removed', hashes: [h(0)], tier: 'offload_ram' },
      { type: 'stored', hashes: [h(0)], parent: null, tier: 'offload_disk' },
      { type: 'removed', hashes: [h(0)], tier: 'offload_disk' },
    ]);
  });

  test('take returns the leading blocks from any tier, in order, byte for byte, and removes them', () => {
    const { t, dir } = tiers(2, 4);
    for (let i = 0; i < 5; i++) t.offload([block(i)]);
    expect(t.lookup([h(0), h(1), h(2), h(3), h(4), h(9)])).toBe(5);
    const got = t.take([h(0), h(1), h(2), h(3), h(4)]);
    expect(got.map((g) => g.tier)).toEqual(['offload_disk', 'offload_disk', 'offload_disk', 'offload_ram', 'offload_ram']);
    got.forEach((g, i) => {
      expect(g.hash).toBe(h(i));
      expect(g.parent).toBe(block(i).parent);
      expect(Array.from(g.data)).toEqual(Array.from(block(i).data));
    });
    expect(t.lookup([h(0)])).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
    expect(t.counters.reloaded).toEqual({ offload_ram: 2, offload_disk: 3 });
  });

  test('a take stops at the first miss', () => {
    const { t } = tiers(4, 0);
    t.offload([block(0), block(2)]);
    expect(t.lookup([h(0), h(1), h(2)])).toBe(1);
    expect(t.take([h(0), h(1), h(2)]).map((g) => g.hash)).toEqual([h(0)]);
    expect(t.tierOf(h(2))).toBe('offload_ram');
  });

  test('promote reads disk blocks into RAM ahead of admission; a take still counts them as disk reloads', async () => {
    const events: KvEvent[] = [];
    const { t, dir } = tiers(3, 8, events);
    for (let i = 0; i < 6; i++) t.offload([block(i)]); // 0..2 on disk, 3..5 in RAM
    const file2 = join(dir, `${h(2)}.kvblock`);
    writeFileSync(file2, readFileSync(file2).subarray(0, 20));
    expect(await t.promote([h(0), h(1), h(2), h(3)])).toBe(2); // block 2 fails its check: stops there
    expect([0, 1, 2].map((i) => t.tierOf(h(i)))).toEqual(['offload_ram', 'offload_ram', null]);
    expect(t.counters.corrupt).toBe(1);
    const got = t.take([h(0), h(1)]);
    expect(got.map((g) => g.tier)).toEqual(['offload_disk', 'offload_disk']);
    expect(Array.from(got[1]?.data as Uint8Array)).toEqual(Array.from(block(1).data));
    // each move is in the event stream: removed from disk, stored in RAM
    expect(events.filter((e) => e.type !== 'cleared' && e.hashes[0] === h(0)).slice(-3)).toEqual([
      { type: 'removed', hashes: [h(0)], tier: 'offload_disk' },
      { type: 'stored', hashes: [h(0)], parent: null, tier: 'offload_ram' },
      { type: 'removed', hashes: [h(0)], tier: 'offload_ram' },
    ]);
    // without a RAM tier there is nowhere to promote to
    const diskOnly = tiers(0, 4).t;
    diskOnly.offload([block(0)]);
    expect(await diskOnly.promote([h(0)])).toBe(0);
  });

  test('a corrupt, truncated, missing or foreign disk file is a miss (recomputed), never data', () => {
    const { t, dir } = tiers(0, 8);
    for (let i = 0; i < 5; i++) t.offload([block(i)]);
    const file = (i: number) => join(dir, `${h(i)}.kvblock`);
    const flipped = readFileSync(file(1));
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 3) ^ 0x40, flipped.length - 3); // one bit of the data
    writeFileSync(file(1), flipped);
    expect(t.take([h(0), h(1), h(2)]).map((g) => g.hash)).toEqual([h(0)]);
    expect(t.counters.corrupt).toBe(1);
    expect(t.tierOf(h(1))).toBe(null); // dropped with its file
    writeFileSync(file(2), readFileSync(file(2)).subarray(0, 30));
    expect(t.take([h(2)])).toEqual([]);
    rmSync(file(3));
    expect(t.take([h(3)])).toEqual([]);
    expect(t.counters.corrupt).toBe(3);
    // a file of another pool layout (another model or KV dtype) under the right name
    writeFileSync(file(4), encodeBlockFile(block(4), 'other-model|f32|16|64'));
    expect(t.take([h(4)])).toEqual([]);
    expect(t.counters.corrupt).toBe(4);
  });

  test('block files: the header names layout, hash and length; the checksum covers the data', () => {
    const b = block(7);
    const f = encodeBlockFile(b, 'L');
    expect(Array.from(decodeBlockFile(f, b.hash, 'L', BYTES) as Uint8Array)).toEqual(Array.from(b.data));
    expect(decodeBlockFile(f, h(8), 'L', BYTES)).toBeNull();
    expect(decodeBlockFile(f, b.hash, 'L2', BYTES)).toBeNull();
    expect(decodeBlockFile(f, b.hash, 'L', BYTES + 1)).toBeNull();
    expect(decodeBlockFile(Buffer.from('not a block file'), b.hash, 'L', BYTES)).toBeNull();
  });

  test('without a RAM tier blocks go straight to disk; without either nothing is enabled', () => {
    const { t } = tiers(0, 2);
    expect(t.enabled).toBe(true);
    t.offload([block(0)]);
    expect(t.tierOf(h(0))).toBe('offload_disk');
    expect(tiers(0, 0).t.enabled).toBe(false);
  });

  test('snapshot lists every tier with parents; close removes the disk files', () => {
    const { t, dir } = tiers(1, 2);
    t.offload([block(0), block(1)]);
    expect(t.snapshot()).toEqual([
      { tier: 'offload_ram', blocks: [{ hash: h(1), parent: h(0) }] },
      { tier: 'offload_disk', blocks: [{ hash: h(0), parent: null }] },
    ]);
    expect(Array.from(t.peek(h(0)) as Uint8Array)).toEqual(Array.from(block(0).data));
    expect(t.tierOf(h(0))).toBe('offload_disk'); // peek leaves it
    t.close();
    expect(() => readdirSync(dir)).toThrow();
  });

  test('a block of the wrong size is refused', () => {
    const { t } = tiers(2, 0);
    expect(() => t.offload([{ ...block(0), data: new Uint8Array(3) }])).toThrow(/3 bytes, not 64/);
  });
});
