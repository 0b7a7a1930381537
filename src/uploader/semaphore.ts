// A counting semaphore with FIFO waiters: the FTP connection pool and the request limiter both hand
// out a fixed number of slots and queue everyone else in arrival order.

export class Semaphore {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`semaphore size must be a positive integer, got ${size}`);
    this.free = size;
  }

  /** Resolves when a slot is taken; call release() exactly once for each. */
  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free = Math.min(this.size, this.free + 1);
  }

  /** Run `work` holding one slot. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await work();
    } finally {
      this.release();
    }
  }

  /** Slots in use and callers waiting, for tests and metrics. */
  get inUse(): number {
    return this.size - this.free;
  }

  get queued(): number {
    return this.waiting.length;
  }
}
