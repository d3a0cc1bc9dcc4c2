// Public API of the storage layer (`raftkv/storage`): the RaftStorage contract RaftNode
// persists through, FileStorage (the WAL and snapshots on disk), MemoryStorage (the reference
// implementation), inspect, and the typed storage errors.
export type { PersistBatch, RaftStorage, StorageStats } from './contract.ts';
export * from './errors.ts';
export {
  defaultIO,
  FileStorage,
  type FileStorageOptions,
  type FileStorageStats,
  type StorageIO,
} from './file-storage.ts';
export { type InspectOptions, inspect } from './inspect.ts';
export { MemoryStorage } from './memory-storage.ts';
