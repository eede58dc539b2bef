/**
 * A per-worker circuit breaker: after `threshold` consecutive failures the worker is skipped for
 * `openMs`; then one trial request is let through (half-open) and its outcome closes or reopens
 * the breaker.
 */
export type BreakerState = 'closed' | 'open' | 'half_open';

export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private trial = false;

  constructor(
    private readonly threshold = 3,
    private readonly openMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  get state(): BreakerState {
    if (this.failures < this.threshold) return 'closed';
    return this.now() - this.openedAt >= this.openMs ? 'half_open' : 'open';
  }

  /** Whether a request may go to this worker now (a half-open breaker admits one at a time). */
  allow(): boolean {
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open' || this.trial) return false;
    this.trial = true;
    return true;
  }

  success(): void {
    this.failures = 0;
    this.trial = false;
  }

  failure(): void {
    this.trial = false;
    this.failures++;
    if (this.failures >= this.threshold) this.openedAt = this.now();
  }

  /** Opens at once, whatever the count: for a worker that went silent (frozen, not flaky). */
  trip(): void {
    this.trial = false;
    this.failures = Math.max(this.failures, this.threshold);
    this.openedAt = this.now();
  }
}
