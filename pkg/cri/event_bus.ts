import { type DomainError, resourceExhausted } from '../errdefs/errors.js';

// An in-process fan-out of events to any number of subscribers (the
// GetContainerEvents streams). Publishing never waits: each subscriber has a
// queue of its own, bounded, so a subscriber that stops reading neither holds
// the others up nor grows memory. One that falls `capacity` events behind is
// dropped with ResourceExhausted (its stream ends with that code and the
// client lists again, as kubelet's evented PLEG does when its stream breaks)
// rather than silently missing events. Events published while nobody
// listens are not kept.
//
//   subscribe() ──▶ open ──close() / bus.close()──▶ ended (undefined)
//                    └──── queue overflows ──────▶ ended (ResourceExhausted)

export interface Subscription<T> extends AsyncIterable<T> {
  /** The next event; done once the subscription ended normally; rejects once it was dropped. */
  next(): Promise<IteratorResult<T, undefined>>;
  /** Idempotent; a waiting next() is done. */
  close(): void;
  /** Resolves when the subscription ends: undefined when closed, the error when dropped. */
  readonly ended: Promise<DomainError | undefined>;
}

export const defaultEventCapacity = 1000;

export class EventBus<T> {
  private readonly subscribers = new Set<Queue<T>>();
  private closed = false;

  constructor(private readonly capacity = defaultEventCapacity) {
    if (!(capacity >= 1)) throw new RangeError(`event bus capacity must be at least 1, not ${capacity}`);
  }

  /** How many subscribers are open now. */
  get size(): number {
    return this.subscribers.size;
  }

  subscribe(): Subscription<T> {
    const q = new Queue<T>(this.capacity, () => this.subscribers.delete(q));
    if (this.closed) q.end(undefined);
    else this.subscribers.add(q);
    return q;
  }

  /** Hands the event to every open subscriber; never blocks, never throws. */
  publish(event: T): void {
    for (const q of [...this.subscribers]) q.push(event);
  }

  /** Ends every subscription (done, not an error) and refuses new ones: the server is stopping. */
  close(): void {
    this.closed = true;
    for (const q of [...this.subscribers]) q.end(undefined);
  }
}

class Queue<T> implements Subscription<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (r: IteratorResult<T, undefined>) => void; reject: (e: unknown) => void } | undefined;
  private outcome: { error: DomainError | undefined } | undefined;
  private markEnded!: (e: DomainError | undefined) => void;
  readonly ended = new Promise<DomainError | undefined>((r) => (this.markEnded = r));

  constructor(
    private readonly capacity: number,
    private readonly onEnd: () => void,
  ) {}

  push(event: T): void {
    if (this.outcome) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: event, done: false });
      return;
    }
    if (this.items.length >= this.capacity) {
      this.end(resourceExhausted(`the event subscriber fell ${this.capacity} events behind and was dropped; subscribe again and list to catch up`, { field: 'events' }));
      return;
    }
    this.items.push(event);
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.outcome?.error) return Promise.reject(this.outcome.error);
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift() as T, done: false });
    if (this.outcome) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  close(): void {
    this.end(undefined);
  }

  /** Ends once; a dropped subscriber's queue is let go at once (bounded memory, no stale events). */
  end(error: DomainError | undefined): void {
    if (this.outcome) return;
    this.outcome = { error };
    if (error) this.items.length = 0;
    this.onEnd();
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      if (error) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
    this.markEnded(error);
  }

  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    return { next: () => this.next(), return: async () => (this.close(), { value: undefined, done: true }) };
  }
}
