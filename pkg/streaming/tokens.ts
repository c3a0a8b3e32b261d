import { randomBytes } from 'node:crypto';

// The single-use tokens in streaming URLs (as kubelet's streaming server):
// Exec, Attach and PortForward answer with a URL holding a random token that
// stands for the request; the first connection with it takes the request, a
// second one, a guessed one or one after the time limit finds nothing.

export class TokenCache<T> {
  private readonly entries = new Map<string, { value: T; expires: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Stores `value` under a new token (128 random bits, URL-safe). */
  put(value: T): string {
    this.sweep();
    const token = randomBytes(16).toString('base64url');
    this.entries.set(token, { value, expires: this.now() + this.ttlMs });
    return token;
  }

  /** The value, once: the token is spent whether or not it had expired. */
  take(token: string): T | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    this.entries.delete(token);
    return e.expires > this.now() ? e.value : undefined;
  }

  get size(): number {
    this.sweep();
    return this.entries.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [k, e] of this.entries) if (e.expires <= now) this.entries.delete(k);
  }
}
