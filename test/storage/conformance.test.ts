import type { RaftStorage } from '../../src/storage/contract.ts';
import { FileStorage } from '../../src/storage/file-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { storageConformance } from './conformance.ts';
import { tempDir } from './helpers.ts';

storageConformance('MemoryStorage', async () => ({
  open: async () => new MemoryStorage(),
  reopen: async (s: RaftStorage) => {
    await s.close();
    return (s as MemoryStorage).durableCopy();
  },
  dispose: async () => undefined,
}));

for (const sync of ['fdatasync', 'dsync'] as const) {
  storageConformance(`FileStorage (sync: ${sync})`, async () => {
    const { dir, dispose } = await tempDir();
    // Small segments, so that rollover and segment removal run in every test.
    const open = () => FileStorage.open(dir, { nodeId: 'n1', clusterId: 'c1', segmentBytes: 4096, sync });
    return {
      open,
      reopen: async (s: RaftStorage) => {
        await s.close();
        return open();
      },
      dispose,
    };
  });
}
