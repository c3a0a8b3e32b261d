// Observers of a record store, told of each change once it is on disk: what
// the record was (undefined: it is new) and what it is now (undefined: it is
// gone). The CRI's container events are built from these (pkg/cri/container_events.ts).

export type RecordChange<T> = (prev: T | undefined, next: T | undefined) => void;

export class RecordObservers<T> {
  private readonly observers = new Set<RecordChange<T>>();

  /** Returns the function that removes the observer. */
  add(observer: RecordChange<T>): () => void {
    this.observers.add(observer);
    return () => this.observers.delete(observer);
  }

  /**
   * Synchronous, in the order of the writes. An observer logs its own
   * failures: one that throws never fails the write that is already done.
   */
  notify(prev: T | undefined, next: T | undefined): void {
    for (const o of this.observers) {
      try {
        o(prev, next);
      } catch {
        // See above: the record is on disk whatever an observer does.
      }
    }
  }
}
