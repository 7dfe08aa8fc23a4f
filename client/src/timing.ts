/** Reconnect delays: exponential with full jitter, so devices that lost the relay together do not return together. */
export class Backoff {
  private attempt = 0
  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next delay, growing until reset. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30))
    this.attempt++
    // Half fixed, half random: never zero, still spread out.
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2)
  }

  reset(): void {
    this.attempt = 0
  }
}

/**
 * Token bucket for outgoing messages, kept under the relay's per-connection rate so that nothing
 * this client sends is dropped with `rate_limited`.
 */
export class TokenBucket {
  private tokens: number
  private last: number
  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst
    this.last = now()
  }

  /** Takes one token; returns 0 when one was free, else how many ms until one is. */
  take(): number {
    const now = this.now()
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.ratePerSecond) / 1000)
    this.last = now
    if (this.tokens >= 1) {
      this.tokens -= 1
      return 0
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSecond)
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
