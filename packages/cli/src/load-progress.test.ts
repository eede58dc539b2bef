import { describe, expect, test } from 'vitest';
import { LoadProgress } from './load-progress.js';

function harness(tty: boolean) {
  let t = 0;
  const out: string[] = [];
  const p = new LoadProgress('m', (s) => out.push(s), { tty, now: () => t });
  return {
    p,
    out,
    at: (ms: number) => {
      t = ms;
    },
  };
}

describe('LoadProgress', () => {
  test('in a log: a line when loading starts, one every 5 s, and the closing line with the time', () => {
    const { p, out, at } = harness(false);
    p.update(10e6, 400e6);
    at(1000);
    p.update(100e6, 400e6); // under 5 s since the last line: quiet
    at(5000);
    p.update(200e6, 400e6);
    at(6000);
    p.update(300e6, 400e6);
    at(8500);
    p.update(400e6, 400e6);
    p.update(400e6, 400e6); // a call that trails the end
    expect(out).toEqual(['loading m: 400 MB of weights\n', 'loading m: 50% (200 of 400 MB, 5 s)\n', 'loaded m: 400 MB in 8.5 s\n']);
  });

  test('on a terminal: one line rewritten at most every 100 ms, then replaced by the closing line', () => {
    const { p, out, at } = harness(true);
    p.update(1e6, 4e6);
    at(50);
    p.update(2e6, 4e6); // within 100 ms: not drawn
    at(150);
    p.update(3e6, 4e6);
    at(200);
    p.update(4e6, 4e6); // the end is always drawn
    expect(out).toEqual([
      '\r\x1b[Kloading m: 25% (1.0 of 4.0 MB, 0 s)',
      '\r\x1b[Kloading m: 75% (3.0 of 4.0 MB, 0 s)',
      '\r\x1b[Kloaded m: 4.0 MB in 0.2 s\n',
    ]);
  });

  test('a failed load ends a terminal line so the error starts on its own; nothing more after it', () => {
    const tty = harness(true);
    tty.p.update(1e6, 4e6);
    tty.p.abort();
    tty.p.update(4e6, 4e6);
    expect(tty.out).toEqual(['\r\x1b[Kloading m: 25% (1.0 of 4.0 MB, 0 s)', '\n']);
    const log = harness(false);
    log.p.abort(); // never reported progress: nothing to end
    expect(log.out).toEqual([]);
  });
});
