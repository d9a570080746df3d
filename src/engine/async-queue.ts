/**
 * A single-consumer queue that turns pushes from the engine loop into an
 * async iterator for the caller, ending with a return value or an error.
 */
export class AsyncQueue<T, R> implements AsyncIterableIterator<T> {
  private items: T[] = [];
  private waiter: (() => void) | null = null;
  private ended: { value: R } | { error: unknown } | null = null;

  push(item: T): void {
    this.items.push(item);
    this.wake();
  }

  end(value: R): void {
    this.ended ??= { value };
    this.wake();
  }

  fail(error: unknown): void {
    this.ended ??= { error };
    this.wake();
  }

  async next(): Promise<IteratorResult<T, R>> {
    for (;;) {
      if (this.items.length > 0) return { done: false, value: this.items.shift()! };
      if (this.ended) {
        if ('error' in this.ended) throw this.ended.error;
        return { done: true, value: this.ended.value };
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}
