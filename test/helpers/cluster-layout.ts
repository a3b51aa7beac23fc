/**
 * Slot ownership on a test Redis Cluster: which node owns a key's slot, and moving a slot with
 * its keys to another master, as a resharding does (SETSLOT IMPORTING / MIGRATING, MIGRATE,
 * SETSLOT NODE on every master).
 */
import { Redis } from 'ioredis';
import type { RedisServer } from './redis-servers.js';

/** A connection to one node, for the duration of `run`. */
async function onNode<T>(node: RedisServer, run: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ host: node.host, port: node.port, maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  try {
    return await run(client);
  } finally {
    client.disconnect();
  }
}

/** The slot of `key`, and the index in `nodes` of the master that owns it. */
export async function ownerOf(nodes: readonly RedisServer[], key: string): Promise<{ slot: number; index: number }> {
  return onNode(nodes[0]!, async (client) => {
    const slot = Number(await client.cluster('KEYSLOT', key));
    const ranges = await client.cluster('SLOTS');
    const port = ranges.find(([first, last]) => first <= slot && slot <= last)?.[2]?.[1];
    const index = nodes.findIndex((node) => node.port === Number(port));
    if (index < 0) throw new Error(`no node of the test cluster owns slot ${slot}`);
    return { slot, index };
  });
}

/** Moves `slot` and its keys from master `from` to master `to`, then tells every master. */
export async function moveSlot(nodes: readonly RedisServer[], slot: number, from: number, to: number): Promise<void> {
  const source = nodes[from]!;
  const target = nodes[to]!;
  const [sourceId, targetId] = await Promise.all([source, target].map((node) => onNode(node, async (client) => String(await client.cluster('MYID')))));
  await onNode(target, (client) => client.cluster('SETSLOT', slot, 'IMPORTING', sourceId!));
  await onNode(source, async (client) => {
    await client.cluster('SETSLOT', slot, 'MIGRATING', targetId!);
    for (;;) {
      const keys = (await client.cluster('GETKEYSINSLOT', slot, 100)) as string[];
      if (keys.length === 0) break;
      await client.migrate(target.host, target.port, '', 0, 5000, 'KEYS', ...keys);
    }
  });
  for (const node of [target, source, ...nodes.filter((n) => n !== source && n !== target)]) {
    await onNode(node, (client) => client.cluster('SETSLOT', slot, 'NODE', targetId!));
  }
}
