export { crc32c } from './crc32c.ts';
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
