/**
 * Changes to the layout of a test Redis Cluster: which master owns a key's slot; moving a slot
 * with its keys to another master, as a resharding does (SETSLOT IMPORTING / MIGRATING, MIGRATE,
 * SETSLOT NODE on every master); adding a replica to a master, so that killing the master makes
 * the cluster fail over to it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from './redis-servers.js';

/** The arguments of startRedisCluster's nodes. */
const CLUSTER_ARGS = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'];
const REPLICA_TIMEOUT_MS = 15_000;

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

/**
 * Starts a cluster node, makes it a replica of master `of` and resolves once it is in sync and
 * every node knows it. The caller stops it.
 */
export async function addReplica(nodes: readonly RedisServer[], of: number): Promise<RedisServer> {
  const master = nodes[of]!;
  const replica = await startRedisServer({ args: CLUSTER_ARGS, clusterBus: true });
  try {
    const masterId = await onNode(master, async (client) => String(await client.cluster('MYID')));
    await onNode(replica, async (client) => {
      await client.cluster('MEET', master.host, master.port);
      await until(async () => String(await client.cluster('NODES')).includes(masterId), 'the new node to learn the master');
      await client.cluster('REPLICATE', masterId);
      await until(async () => /master_link_status:up/.test(await client.info('replication')), 'the replica to sync');
    });
    const all = [...nodes, replica];
    await until(async () => {
      const infos = await Promise.all(all.map((node) => node.command('CLUSTER', 'INFO')));
      return infos.every((info) => new RegExp(`cluster_known_nodes:${all.length}\\b`).test(info) && /cluster_state:ok/.test(info));
    }, 'every node to know the replica');
    return replica;
  } catch (error) {
    await replica.stop();
    throw error;
  }
}

/** Whether `node` is a master now. */
export async function isMaster(node: RedisServer): Promise<boolean> {
  return /role:master/.test(await node.command('INFO', 'replication'));
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + REPLICA_TIMEOUT_MS;
  while (!(await condition().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${REPLICA_TIMEOUT_MS} ms waiting for ${what}`);
    await sleep(50);
  }
}
