/**
 * Writer slots claimed in Redis: each process sharing a Redis tier (one prefix) holds one of the
 * 16 slots of the version clock (version-clock.ts) under a lease, so that no two of them issue
 * the same version without anyone configuring `writerId`.
 *
 * A slot is the key `<prefix>writer:<slot>` holding the claimer's random token, with a lease of
 * `leaseMs` that the cache renews every third of it. A claim tries the slots from a random one
 * on, with SET NX. A renewal extends the lease, or takes the slot again when nobody holds it
 * (Redis restarted empty, or the lease ran out while Redis was unreachable); when another process
 * took it meanwhile, the claim moves to a free slot. What it cannot prevent: a process cut off
 * from Redis for longer than the lease keeps writing in its slot while a newcomer may take it,
 * until its next renewal reaches Redis.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { WriterSlotClaim } from './tier.js';

/** The client calls the claim needs: the tier's `call` for its scripts, and SET NX. */
export interface WriterSlotCommands {
  setIfAbsent(key: string, token: string, leaseMs: number): Promise<boolean>;
  renew(key: string, token: string, leaseMs: number): Promise<boolean>;
  release(key: string, token: string): Promise<void>;
}

export const DEFAULT_WRITER_SLOT_LEASE_MS = 30_000;

export class RedisWriterSlotClaim implements WriterSlotClaim {
  private readonly token = randomBytes(12).toString('base64url');
  private held: number | undefined;

  constructor(
    private readonly commands: WriterSlotCommands,
    private readonly prefix: string,
    private readonly slots: number,
    readonly leaseMs: number,
  ) {}

  /** Takes a free slot, starting from a random one; undefined when all are held. */
  async claim(): Promise<number | undefined> {
    const start = randomInt(this.slots);
    for (let i = 0; i < this.slots; i++) {
      const slot = (start + i) % this.slots;
      if (await this.commands.setIfAbsent(this.keyOf(slot), this.token, this.leaseMs)) return (this.held = slot);
    }
    return (this.held = undefined);
  }

  async renew(): Promise<number | undefined> {
    if (this.held !== undefined && (await this.commands.renew(this.keyOf(this.held), this.token, this.leaseMs))) return this.held;
    return this.claim();
  }

  async release(): Promise<void> {
    const held = this.held;
    this.held = undefined;
    if (held !== undefined) await this.commands.release(this.keyOf(held), this.token);
  }

  private keyOf(slot: number): string {
    return `${this.prefix}writer:${slot}`;
  }
}
