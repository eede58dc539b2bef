/**
 * Incremental detokenization with stop strings: text is released only when it can no longer
 * change (no trailing partial UTF-8 character) and cannot be the start of a stop string. A stop
 * string ends the request and is not emitted, nor is anything after it.
 */
import type { Tokenizer } from '@kcache/models';

export class StreamDetokenizer {
  private readonly ids: number[] = [];
  private emitted = 0;
  private stopped = false;

  constructor(
    private readonly tokenizer: Tokenizer | null,
    private readonly stop: readonly string[],
  ) {}

  /** Continues after `tokens` whose first `textLen` characters of text were already emitted (elsewhere). */
  resume(tokens: readonly number[], textLen: number): void {
    this.ids.push(...tokens);
    this.emitted = textLen;
  }

  /** Adds tokens; returns the text now safe to emit and whether a stop string was found. */
  push(tokens: readonly number[]): { text: string; stopped: boolean } {
    if (!this.tokenizer) return { text: '', stopped: false };
    this.ids.push(...tokens);
    const full = this.tokenizer.decode(this.ids);
    for (const s of this.stop) {
      const at = full.indexOf(s, Math.max(0, this.emitted - s.length + 1));
      if (at >= 0) {
        const text = at > this.emitted ? full.slice(this.emitted, at) : '';
        this.emitted = Math.max(this.emitted, at);
        this.stopped = true;
        return { text, stopped: true };
      }
    }
    let safe = full.length;
    while (safe > this.emitted && full[safe - 1] === '\uFFFD') safe--;
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, safe - this.emitted); k > 0; k--) {
        if (full.endsWith(s.slice(0, k), safe)) {
          safe -= k;
          break;
        }
      }
    }
    const text = full.slice(this.emitted, safe);
    this.emitted = Math.max(this.emitted, safe);
    return { text, stopped: false };
  }

  /** The rest of the text at the end of a request (held-back prefixes that never became a stop). */
  flush(): string {
    if (!this.tokenizer || this.stopped) return '';
    const full = this.tokenizer.decode(this.ids);
    const text = full.slice(this.emitted);
    this.emitted = full.length;
    return text;
  }
}
