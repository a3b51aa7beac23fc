/**
 * An invalidation bus between in-process instances whose every delivery and acknowledgement a
 * scheduler orders (see scheduled.ts). It keeps the promise of InvalidationBus: `publish`
 * resolves once every other connected instance applied the message, and an instance whose
 * connection is dropped stops trusting its L1 (`connected` turns false, and it is told) before
 * any message can miss it. A message on its way to an instance that dropped meanwhile is lost,
 * as on a real connection; trust comes back only with `restore`.
 */
import type { Invalidation, InvalidationBus } from '../../src/tiers/invalidation-bus.js';
import type { Gate } from './scheduled.js';

export class ScheduledBusHub {
  readonly members = new Set<ScheduledBus>();
  /** Messages delivered and applied; lost on the way (the receiver had dropped). */
  readonly counts = { delivered: 0, lost: 0 };

  constructor(readonly gate: Gate) {}

  bus(name: string): ScheduledBus {
    return new ScheduledBus(this, name);
  }
}

export class ScheduledBus implements InvalidationBus {
  connected = false;
  private onMessage: ((message: Invalidation) => void | Promise<void>) | undefined;
  private onState: ((connected: boolean) => void) | undefined;

  constructor(
    private readonly hub: ScheduledBusHub,
    readonly name: string,
  ) {}

  async subscribe(onMessage: (message: Invalidation) => void | Promise<void>, onState: (connected: boolean) => void): Promise<void> {
    this.onMessage = onMessage;
    this.onState = onState;
    this.hub.members.add(this);
    this.setConnected(true);
  }

  async publish(message: Invalidation): Promise<void> {
    const others = [...this.hub.members].filter((member) => member !== this && member.connected);
    await Promise.all(others.map((member) => member.deliver(message, this.name)));
  }

  /** The connection drops: this instance stops trusting its L1 at once. */
  drop(): void {
    this.setConnected(false);
  }

  /** The connection is back: L1 is emptied (by the tier, told of the change) and trusted again. */
  restore(): void {
    this.setConnected(true);
  }

  async close(): Promise<void> {
    this.hub.members.delete(this);
    this.connected = false;
  }

  private async deliver(message: Invalidation, from: string): Promise<void> {
    const what = `bus ${from} -> ${this.name} ${String(message.key)}@${String(message.version)}`;
    await this.hub.gate(what);
    if (!this.connected) {
      this.hub.counts.lost++;
      return;
    }
    await this.onMessage!(message);
    this.hub.counts.delivered++;
    await this.hub.gate(`${what} -> ack`);
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.onState?.(connected);
  }
}
