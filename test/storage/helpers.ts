import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DurableState, Entry, EntryType, HardState, Snapshot } from '../../src/raft/types.ts';

/** Deterministic payload for entry (index, term), so any process can check what it reads. */
export function payload(index: number, term: number, size = 16): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (index * 31 + term * 7 + i) & 0xff;
  return b;
}

export function ent(index: number, term: number, size = 16, type: EntryType = 0): Entry {
  return { index, term, type, data: payload(index, term, size) };
}

export function ents(from: number, to: number, term: number, size = 16): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(ent(i, term, size));
  return out;
}

export function hs(term: number, commit: number, vote = ''): HardState {
  return { term, vote, commit };
}

export function snap(index: number, term: number, voters: string[] = ['n1', 'n2', 'n3']): Snapshot {
  return {
    meta: { index, term, conf: { voters, learners: [] } },
    data: new TextEncoder().encode(`state@${index}/${term}`),
  };
}

const hex = (d: Uint8Array): string => Buffer.from(d.buffer, d.byteOffset, d.length).toString('hex');

/** A plain, comparable rendering of a durable state (byte arrays as hex). */
export function describe(s: DurableState): unknown {
  return {
    hardState: { term: s.hardState.term, vote: s.hardState.vote, commit: s.hardState.commit },
    snapshot: s.snapshot
      ? {
          index: s.snapshot.meta.index,
          term: s.snapshot.meta.term,
          conf: { voters: [...s.snapshot.meta.conf.voters], learners: [...s.snapshot.meta.conf.learners] },
          data: hex(s.snapshot.data),
        }
      : null,
    entries: s.entries.map((e) => `${e.index}/${e.term}/${e.type}/${hex(e.data)}`),
  };
}

export async function tempDir(
  prefix = 'raftkv-storage-',
): Promise<{ dir: string; dispose: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/** Runs `body` with a fresh temporary directory, removed afterwards whatever happens. */
export async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const { dir, dispose } = await tempDir();
  try {
    await body(dir);
  } finally {
    await dispose();
  }
}

/** The identity FileStorage tests open their directories with. */
export const ID = { nodeId: 'n1', clusterId: 'c1' } as const;
/** A persist batch with nothing in it, to spread over. */
export const NO_BATCH = { snapshot: null, entries: [], hardState: null } as const;

/** A small seeded PRNG (mulberry32), so a failing seed replays exactly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
