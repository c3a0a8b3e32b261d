// Undo as you go (STYLE.md): each step of a multi-step operation pushes its
// undo; a failure unwinds them in reverse, and an undo that fails is logged,
// never allowed to hide the error that caused the unwinding.

export class CleanupStack {
  private readonly undos: Array<{ what: string; undo: () => Promise<unknown> }> = [];

  push(what: string, undo: () => Promise<unknown>): void {
    this.undos.push({ what, undo });
  }

  /** Forget the undos: the operation succeeded. */
  release(): void {
    this.undos.length = 0;
  }

  async unwind(onError: (what: string, e: unknown) => void): Promise<void> {
    while (this.undos.length > 0) {
      const { what, undo } = this.undos.pop()!;
      try {
        await undo();
      } catch (e: unknown) {
        onError(what, e);
      }
    }
  }
}
