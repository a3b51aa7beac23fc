/**
 * The bus that tells every instance of an application that a key changed, so each drops its
 * in-process copy (L1). Delivery may be lost while a connection is down; that is why a bus
 * reports its connection state, and a two-tier cache stops trusting its L1 whenever the bus is
 * not connected.
 */

/** "Anything cached for `key` older than `version` is stale." */
export interface Invalidation {
  readonly key: string;
  readonly version: number | undefined;
}

export interface InvalidationBus {
  /** True while messages published by others reach this instance. */
  readonly connected: boolean;
  /** Starts listening. `onState` is told every change of `connected`. */
  subscribe(onMessage: (message: Invalidation) => void, onState: (connected: boolean) => void): Promise<void>;
  /** Sends to every other instance (not back to this one). Rejects when it could not send. */
  publish(message: Invalidation): Promise<void>;
  close(): Promise<void>;
}
