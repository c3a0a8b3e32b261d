// One queue per key: operations on one record run one at a time, in call
// order, while operations on different records run at once. The sandbox and
// container stores serialize their writes through it (a Stop racing a Remove
// of one pod must not write the record back after it is gone).

export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `op` after every earlier operation on `key` has settled (whatever its outcome). */
  run<T>(key: string, op: () => Promise<T>): Promise<T> {
    const run = (this.tails.get(key) ?? Promise.resolve()).then(op, op);
    const tail = run.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }
}
