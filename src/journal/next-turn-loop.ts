/**
 * A background loop for batching: started on the next turn of the event loop (setImmediate, not
 * a microtask, so that everything queued in the current turn joins the first batch), one run at
 * a time, and started again after a run while work remains.
 */
export class NextTurnLoop {
  private running: Promise<void> | undefined;

  constructor(
    /** Whether there is work queued. */
    private readonly hasWork: () => boolean,
    /** Takes the queued work in batches until none is left; must not reject. */
    private readonly drain: () => Promise<void>,
  ) {}

  /** Starts a run unless one is under way or nothing is queued. */
  kick(): void {
    if (this.running !== undefined || !this.hasWork()) return;
    this.running = new Promise<void>((resolve) => setImmediate(resolve))
      .then(this.drain)
      .finally(() => {
        this.running = undefined;
        this.kick();
      });
  }

  /** Resolves once no run is under way (work queued meanwhile runs first). */
  async settled(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }
}
