/**
 * Waiting for a redisTier on a Redis Cluster to know its generation. On a single Redis the tier
 * reads its one marker in a round trip; on a Cluster it reads 16384 (one per slot, see
 * src/tiers/redis-slot-generations.ts) once the Cluster is ready, which takes a few hundred
 * milliseconds. Until a slot's marker is read, a set under generation() in that slot is refused
 * (safe, but a test that expects it to apply must wait).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SlotGenerations } from '../../src/tiers/redis-slot-generations.js';
import type { Tier } from '../../src/tiers/tier.js';

/** Whether `generation` is a Cluster snapshot that knows the id of every slot. */
export function knowsEverySlot(generation: unknown): boolean {
  return generation instanceof SlotGenerations && generation.chunks.every((chunk) => chunk.every((id) => id !== undefined));
}

/**
 * Resolves once `tier` (a redisTier on a Cluster, or a tier that forwards its generation, as
 * twoTier does) knows the id of every slot's marker; rejects after `timeoutMs`.
 */
export async function generationsRead(tier: Tier, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!knowsEverySlot(tier.generation?.())) {
    if (Date.now() > deadline) throw new Error(`the tier did not read the generation of every slot within ${timeoutMs} ms`);
    await sleep(10);
  }
}
