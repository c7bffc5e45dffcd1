/**
 * Group commit: appends that arrive while the log is idle wait for the end of the current turn of
 * the event loop (setImmediate), so every append from the I/O callbacks of one turn (many
 * connections' produce requests) goes out in one commit; appends that arrive while a commit is
 * running form the next one. Each commit is one writev, under fsync=always a durable (O_DSYNC) one,
 * for all of them. Commits run strictly one after another, which is what keeps offsets, file
 * order and acknowledgement order the same.
 *
 * The work of the next commit already overlaps the running one: PartitionLog.append verifies a
 * batch (CRC) and assigns its offsets when it arrives, so what is queued while a write is in
 * flight is ready to go as soon as that commit ends. What cannot overlap is what is not there
 * yet: producers that wait for their acknowledgement before sending again (the benchmark's
 * closed loop) hand over their next batches only after the commit, so their verification runs
 * between two writes whatever the queue does (docs/storage.md, "Performance").
 *
 * The first failed commit poisons the queue: its items and every later one are rejected with
 * that error. Nothing is retried; a write that may or may not have reached the disk must not be
 * acknowledged later (see docs/storage.md).
 */
export interface CommitItem {
  resolve(): void;
  reject(err: Error): void;
}

export class CommitQueue<T extends CommitItem> {
  readonly #commit: (items: T[]) => Promise<void>;
  #queue: T[] = [];
  #running = false;
  #scheduled = false;
  #failure: Error | undefined;
  #idleWaiters: (() => void)[] = [];

  /** `commit` makes the items durable (per the fsync mode); it throws to fail them all. */
  constructor(commit: (items: T[]) => Promise<void>) {
    this.#commit = commit;
  }

  push(item: T): void {
    if (this.#failure) {
      item.reject(this.#failure);
      return;
    }
    this.#queue.push(item);
    if (!this.#running && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => void this.#run());
    }
  }

  /** Fails everything queued and everything pushed from now on. */
  fail(err: Error): void {
    this.#failure ??= err;
    const items = this.#queue;
    this.#queue = [];
    for (const item of items) item.reject(this.#failure);
  }

  /** Resolves once nothing is queued or committing. */
  whenIdle(): Promise<void> {
    if (!this.#running && !this.#scheduled && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async #run(): Promise<void> {
    this.#scheduled = false;
    this.#running = true;
    while (this.#queue.length > 0 && !this.#failure) {
      const items = this.#queue;
      this.#queue = [];
      try {
        await this.#commit(items);
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        for (const item of items) item.reject(this.#failure ?? error);
        this.fail(error);
        break;
      }
      for (const item of items) item.resolve();
      // Let the callers' continuations run first: whatever they append in reaction to their
      // acknowledgement joins the next commit at once instead of after another loop turn.
      await null;
    }
    this.#running = false;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
