/**
 * The writer slot of a cache (the low bits of its versions, version-clock.ts): the `writerId`
 * option when given; else, on a shared tier that can hand out slots (Redis), one claimed there
 * under a lease and renewed every third of it, so that the processes sharing the tier hold
 * different slots; else a random one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { CacheEventEmitter } from './events.js';
import type { Tier, WriterSlotClaim } from './tiers/tier.js';
import { withTimeout } from './util/timeout.js';
import { WRITER_SLOTS, type VersionClock } from './version-clock.js';

/** Where a cache's writer slot came from. */
export type WriterSlotSource = 'option' | 'claimed' | 'random';

/** The claim made while createCache starts: the slot taken, if any, and the claim to renew. */
export interface FirstClaim {
  readonly claim?: WriterSlotClaim;
  readonly slot?: number;
}

/** How long createCache waits for a claim before it goes on with a random slot. */
const CLAIM_TIMEOUT_MS = 3_000;
/** Pause between claims that failed (a client still connecting, which fails fast). */
const CLAIM_RETRY_MS = 50;

/**
 * Claims a slot in `tier` when it can hand them out and no `writerId` is given. Retried while it
 * fails, for up to 3 s; never throws (no slot: the cache draws one).
 */
export async function claimFirstSlot(tier: Tier, writerId: number | undefined): Promise<FirstClaim> {
  if (writerId !== undefined || tier.writerSlots === undefined) return {};
  const claim = tier.writerSlots(WRITER_SLOTS);
  const deadline = performance.now() + CLAIM_TIMEOUT_MS;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return { claim };
    try {
      return { claim, slot: await withTimeout(claim.claim(), left, 'claiming a writer slot') };
    } catch {
      await sleep(Math.min(CLAIM_RETRY_MS, Math.max(0, deadline - performance.now())));
    }
  }
}

export class WriterSlot {
  private current: WriterSlotSource;
  private readonly claim: WriterSlotClaim | undefined;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;

  /** Puts `versions` in the slot of `first` (or of `writerId`) and renews a claim every third of its lease. */
  constructor(
    private readonly versions: VersionClock,
    private readonly events: CacheEventEmitter,
    first: FirstClaim,
    writerId: number | undefined,
  ) {
    this.claim = first.claim;
    if (writerId !== undefined) versions.moveTo(writerId);
    else if (first.slot !== undefined) versions.moveTo(first.slot);
    this.current = writerId !== undefined ? 'option' : first.slot !== undefined ? 'claimed' : 'random';
    if (this.claim === undefined) return;
    // A process that found no slot free (or no Redis) keeps trying at every renewal.
    this.timer = setInterval(() => void this.renew(), Math.max(10, Math.floor(this.claim.leaseMs / 3)));
    this.timer.unref();
  }

  get source(): WriterSlotSource {
    return this.current;
  }

  /** Extends the claim; moves to another slot when this one was taken meanwhile. Never throws. */
  renew(): Promise<void> {
    if (this.claim === undefined || this.timer === undefined) return Promise.resolve();
    this.renewing ??= this.renewOnce(this.claim).finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  private async renewOnce(claim: WriterSlotClaim): Promise<void> {
    const previous = this.versions.writerId;
    const wasClaimed = this.current === 'claimed';
    let slot: number | undefined;
    try {
      slot = await withTimeout(claim.renew(), CLAIM_TIMEOUT_MS, 'renewing the writer slot');
    } catch {
      return; // The tier is unreachable: keep the slot, try again at the next renewal.
    }
    if (slot === undefined) {
      this.current = 'random';
      if (wasClaimed) this.events.emit('writer-slot', { slot: previous, previous, claimed: false });
      return;
    }
    this.current = 'claimed';
    if (slot === previous && wasClaimed) return;
    this.versions.moveTo(slot);
    this.events.emit('writer-slot', { slot, previous, claimed: true });
  }

  /** Stops renewing and gives the slot back; never throws. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.renewing;
    if (this.claim === undefined) return;
    await withTimeout(this.claim.release(), CLAIM_TIMEOUT_MS, 'releasing the writer slot').catch(() => undefined);
  }
}
