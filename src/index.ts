/** cachewise: keeps a cache and a database in step. The public API, and nothing else. */
export { createCache, Cache, type CacheOptions, type CacheStats, type CloseReport, type JournalRecovery } from './cache.js';
export type { WriterSlotSource } from './writer-slot.js';
export { closeOnSignals, type ShutdownOptions } from './shutdown.js';
export { Collection, type FillLease, type LookupResult, type WriteResult } from './collection.js';
export type { CollectionPolicy, WritePattern, ReadPattern, Durability, FlushOptions, RetryOptions, PendingOptions, ResolvedPolicy } from './policy.js';
export { SEED_RULES } from './policy.js';
export { CachewiseError, ErrorCodes, isCachewiseError, type ErrorCode } from './errors.js';
export { systemClock, ManualClock, type Clock } from './clock.js';
export type { Duration } from './duration.js';
export type { CacheEvents, CacheEventName } from './events.js';
export type { CollectionStatsSnapshot, LatencySummary } from './stats.js';
export type { DeadLetter } from './patterns/write-back/dead-letters.js';
export type { UnflushedWrite } from './patterns/writer.js';
export { memoryTier, type MemoryTierOptions } from './tiers/memory-tier.js';
export type { Tier, TierEntry, TierCapabilities, Lease, WriterSlotClaim } from './tiers/tier.js';
export { notApplied, type Store, type StoreRecord, type StoreWrite, type WriteOutcome } from './stores/store.js';
export { sqliteStore, type SqliteStoreOptions } from './stores/sqlite-store.js';
export {
  functionStore,
  type FunctionStoreOptions,
  type VersionedFunctionStoreOptions,
  type UnversionedFunctionStoreOptions,
  type FunctionStoreEntry,
  type FunctionStoreRemoval,
  type FunctionStoreRecord,
  type FunctionWriteResult,
  type FunctionBatchResult,
} from './stores/function-store.js';
export {
  postgresStore,
  postgresMigrationSql,
  type PostgresStoreOptions,
  type PostgresSharedPoolOptions,
  type PostgresOwnPoolOptions,
  type PostgresTableOptions,
} from './stores/postgres-store.js';
export { redisTier, redisEvictionPolicy, type RedisTierOptions, type RedisClient } from './tiers/redis-tier.js';
export { twoTier, type TwoTierOptions } from './tiers/two-tier.js';
export { redisBus, type RedisBusOptions } from './tiers/redis-bus.js';
export type { InvalidationBus, Invalidation } from './tiers/invalidation-bus.js';
export type { CircuitBreakerOptions } from './tiers/circuit-breaker.js';
export { fileJournal, type FileJournalOptions, type JournalIo } from './journal/file-journal.js';
export type { Journal, JournalRecord, JournalPosition, RecoveredRecord, RecoveryReport, DamagedRange, JournalStats } from './journal/journal.js';
export { redisStreamJournal, type RedisStreamJournal, type RedisStreamJournalOptions, type RedisStreamJournalStats } from './journal/redis-stream-journal.js';
export { isSharedJournal, type SharedJournal } from './journal/shared-journal.js';
