/**
 * An async step run once on first use (preparing a collection's table), retried on the next use
 * when it failed. After success, `ready` is true and callers skip the await on the hot path.
 */
export class Once {
  ready = false;
  private running: Promise<void> | undefined;

  constructor(private readonly step: () => Promise<void>) {}

  wait(): Promise<void> {
    if (this.running === undefined) {
      this.running = this.step().then(
        () => {
          this.ready = true;
        },
        (error: unknown) => {
          this.running = undefined;
          throw error;
        },
      );
    }
    return this.running;
  }
}
