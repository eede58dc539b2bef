/**
 * The progress line a command shows while a model's weights load (the engine reports bytes read
 * so far and in all). On a terminal one line is rewritten in place (at most every 100 ms); in a
 * log (a file, a pipe, `kcache up` reading its workers) it is a line when loading starts, one
 * every 5 s while it lasts, and one when it ends.
 */
export interface LoadProgressOptions {
  /** Rewrite one line in place (a terminal) rather than append lines. */
  tty: boolean;
  /** Milliseconds, monotonic (tests pass a clock). */
  now?: () => number;
}

/** What every line this module writes starts with (`kcache up` relays its workers' lines by it). */
export const LOAD_PROGRESS_LINE = /^load(ing|ed) /;

const TTY_EVERY_MS = 100;
const LOG_EVERY_MS = 5000;

export class LoadProgress {
  private readonly now: () => number;
  private readonly started: number;
  private lastShown = Number.NEGATIVE_INFINITY;
  private loaded = 0;
  private total = 0;
  private finished = false;

  constructor(
    private readonly label: string,
    private readonly write: (text: string) => void,
    private readonly o: LoadProgressOptions,
  ) {
    this.now = o.now ?? (() => performance.now());
    this.started = this.now();
  }

  /** For Engine.load's onProgress; the call that reports every byte loaded writes the closing line. */
  readonly update = (loaded: number, total: number): void => {
    if (this.finished) return;
    const first = this.total === 0;
    this.loaded = loaded;
    this.total = total;
    const t = this.now();
    if (loaded >= total) {
      this.finished = true;
      const s = (t - this.started) / 1000;
      this.write(`${this.o.tty ? '\r\x1b[K' : ''}loaded ${this.label}: ${mb(total)} in ${s.toFixed(1)} s\n`);
    } else if (this.o.tty) {
      if (t - this.lastShown < TTY_EVERY_MS) return;
      this.lastShown = t;
      this.write(`\r\x1b[K${this.progressText(t)}`);
    } else if (first) {
      this.lastShown = t;
      this.write(`loading ${this.label}: ${mb(total)} of weights\n`);
    } else if (t - this.lastShown >= LOG_EVERY_MS) {
      this.lastShown = t;
      this.write(`${this.progressText(t)}\n`);
    }
  };

  /** Ends a terminal's line without a closing message: loading failed, and its error follows. */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.o.tty && this.total > 0) this.write('\n');
  }

  private progressText(t: number): string {
    const pct = this.total > 0 ? Math.floor((100 * this.loaded) / this.total) : 0;
    return `loading ${this.label}: ${pct}% (${mb(this.loaded, false)} of ${mb(this.total)}, ${((t - this.started) / 1000).toFixed(0)} s)`;
  }
}

function mb(bytes: number, unit = true): string {
  const v = bytes / 1e6;
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)}${unit ? ' MB' : ''}`;
}

/** A LoadProgress on this process's stderr, a terminal or not. */
export function stderrLoadProgress(label: string): LoadProgress {
  return new LoadProgress(label, (t) => process.stderr.write(t), { tty: process.stderr.isTTY === true });
}
