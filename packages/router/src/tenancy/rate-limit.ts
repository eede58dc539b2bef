/**
 * Per-tenant rate limits: a token bucket for requests and one for tokens (prompt tokens at
 * admission, generated tokens as they are delivered), each holding one second's worth. The token
 * bucket may go into debt (a request's output is only known at its end); a tenant in debt is
 * refused until it refills. Pure: the caller passes the clock.
 */
export class TokenBucket {
  private level: number;
  private at: number;

  constructor(
    readonly perS: number,
    now: number,
  ) {
    this.level = Math.max(1, perS);
    this.at = now;
  }

  private refill(now: number): void {
    const burst = Math.max(1, this.perS);
    this.level = Math.min(burst, this.level + ((now - this.at) / 1000) * this.perS);
    this.at = now;
  }

  /** Takes `n` if the bucket has them, or (debt allowed) if it is not empty. */
  take(n: number, now: number, allowDebt = false): boolean {
    this.refill(now);
    if (this.level >= n || (allowDebt && this.level > 0)) {
      this.level -= n;
      return true;
    }
    return false;
  }

  /** Charges `n` that were already used (may go into debt). */
  charge(n: number, now: number): void {
    this.refill(now);
    this.level -= n;
  }

  /** Milliseconds until `n` would be available (0 if now). */
  waitMs(n: number, now: number): number {
    this.refill(now);
    const need = Math.min(n, Math.max(1, this.perS)) - this.level;
    return need <= 0 ? 0 : Math.ceil((need / this.perS) * 1000);
  }
}

export interface Limits {
  requestsPerS?: number;
  tokensPerS?: number;
}

export type Admission = { ok: true } | { ok: false; what: 'requests' | 'tokens'; retryAfterMs: number };

export class TenantLimits {
  private readonly buckets = new Map<string, { requests: TokenBucket | null; tokens: TokenBucket | null }>();

  constructor(
    /** Defaults for a tenant whose key line names no limit (0 or undefined: unlimited). */
    private readonly defaults: Limits = {},
    private readonly now: () => number = Date.now,
  ) {}

  private of(tenant: string, own: Limits) {
    let b = this.buckets.get(tenant);
    if (!b) {
      const rps = own.requestsPerS ?? this.defaults.requestsPerS ?? 0;
      const tps = own.tokensPerS ?? this.defaults.tokensPerS ?? 0;
      b = { requests: rps > 0 ? new TokenBucket(rps, this.now()) : null, tokens: tps > 0 ? new TokenBucket(tps, this.now()) : null };
      this.buckets.set(tenant, b);
    }
    return b;
  }

  /** One more request with `promptTokens`: admitted (and counted), or why not and when to retry. */
  admit(tenant: string, own: Limits, promptTokens: number): Admission {
    const b = this.of(tenant, own);
    const now = this.now();
    if (b.tokens && !b.tokens.take(promptTokens, now, true)) return { ok: false, what: 'tokens', retryAfterMs: b.tokens.waitMs(1, now) };
    if (b.requests && !b.requests.take(1, now)) {
      b.tokens?.charge(-promptTokens, now); // not admitted: give the prompt's tokens back
      return { ok: false, what: 'requests', retryAfterMs: b.requests.waitMs(1, now) };
    }
    return { ok: true };
  }

  /** Generated tokens delivered to the tenant. */
  charge(tenant: string, own: Limits, tokens: number): void {
    this.of(tenant, own).tokens?.charge(tokens, this.now());
  }
}
