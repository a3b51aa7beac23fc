/**
 * The bus that tells every instance of an application that a key changed, so each drops its
 * in-process copy (L1) before the write that changed it is reported done (contract 3 across
 * instances).
 *
 * A bus promises two things. `publish` resolves only once every other instance has applied the
 * message, or can no longer serve anything it cached before the message was sent. `connected`
 * is true only while this instance may serve its L1: while it knows that what others publish
 * reaches it. Delivery may be lost while a connection is down; that is why a two-tier cache
 * checks `connected` on every L1 read, and empties its L1 whenever `connected` changes.
 */

/**
 * "Anything cached for `key` older than `version` is stale" (no version: whatever is cached for
 * `key`); a null key means every key (the tier was cleared).
 */
export interface Invalidation {
  readonly key: string | null;
  readonly version: number | undefined;
}

export interface InvalidationBus {
  /**
   * True while this instance may trust its L1: messages published by others reach it, as the bus
   * confirmed recently (within its trust window).
   */
  readonly connected: boolean;
  /**
   * Starts listening. `onMessage` must apply the message (drop the L1 copy) before its promise
   * settles: the bus acknowledges the message to its sender after that. `onState` is told every
   * change of `connected` that the bus observes (a dropped connection; trust regained).
   */
  subscribe(onMessage: (message: Invalidation) => void | Promise<void>, onState: (connected: boolean) => void): Promise<void>;
  /**
   * Sends to every other instance (not back to this one). Resolves once each live instance has
   * acknowledged it, or once long enough has passed that an instance that did not can no longer
   * trust its L1. Rejects when it could not send.
   */
  publish(message: Invalidation): Promise<void>;
  /** Optional: the longest `publish` waits for acknowledgements, in milliseconds. */
  readonly publishWaitMs?: number;
  close(): Promise<void>;
}
