/**
 * The data directory's lock: at most one live process (and one FileStorage in it) has a data
 * directory open, and a holder that died (kill -9, OOM kill, a container restart, a reboot)
 * never blocks the next start, whatever PID the new process gets.
 *
 * Owner identity. A PID alone is ambiguous: in a container the node is PID 1 after every
 * restart, and PIDs are reused. A lock names its owner by (boot id, PID namespace, pid, start
 * time): /proc/sys/kernel/random/boot_id, the inode of /proc/self/ns/pid, and field 22 of
 * /proc/PID/stat (clock ticks since boot). The owner is alive only if a process with that pid
 * (seen from its own PID namespace) exists now with that very start time and is not a zombie.
 * /proc is read, not kill(pid, 0), so a process of another user (EPERM) is judged like any
 * other. A lock from another boot of this host is dead; one from another host (other boot id
 * and hostname: a shared file system) cannot be checked and is never taken over. Without
 * /proc (not Linux) the owner is judged by pid and kill(pid, 0) as before.
 *
 * Atomicity: a versioned lock. The lock's state is the file `LOCK.<n>` with the highest n:
 * either `held` by an owner or `released`. Every change of state is the creation of
 * `LOCK.<n+1>` by link(2) of a complete temp file, which fails with EEXIST if the name exists:
 * of all processes that judged `LOCK.<n>` free (released, or its owner dead), exactly one
 * creates `LOCK.<n+1>`, so a stale lock is taken over by one process, never two. Release
 * writes `LOCK.<n+1>` released rather than removing anything.
 * Invariant: the highest version is never removed (only versions below one's own, by the
 * process that holds or has just released the highest), so the highest n never decreases. A
 * slow process whose link lands on a number that was already removed (n+1 below the current
 * highest) sees a higher version when it checks right after, removes its file and starts over;
 * so a process holds the lock exactly when its `held` file is the highest version.
 *
 * A `LOCK` file of the earlier format ({pid, host}) is judged by pid (a pid equal to ours is
 * an earlier incarnation: we have not written it) and removed when its owner is gone.
 */
import { randomBytes } from 'node:crypto';
import { link, readdir, readFile, readlink, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { ioError, StorageLockedError, withFreeSpace } from './errors.ts';

/** The earlier lock file (`{pid, host}`), still judged and cleared when stale. */
export const LEGACY_LOCK_FILE = 'LOCK';
const VERSION_RE = /^LOCK\.(\d{1,15})$/;
/** Contended attempts before giving up (each one is a state change by another process). */
const MAX_ATTEMPTS = 64;

export interface LockOwner {
  readonly pid: number;
  readonly host: string;
  /** /proc/sys/kernel/random/boot_id; absent where /proc is not available. */
  readonly bootId?: string;
  /** Inode number of the owner's PID namespace (/proc/self/ns/pid). */
  readonly pidNs?: string;
  /** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
  readonly startTime?: string;
  readonly uid?: number;
}

interface LockRecord {
  readonly format: 2;
  readonly state: 'held' | 'released';
  readonly owner: LockOwner;
  /** Makes every record's bytes unique. */
  readonly nonce: string;
}

type Verdict =
  | { readonly alive: true; readonly why: string }
  | { readonly alive: false; readonly why: string };

/** Directories (resolved paths) locked by this process: a second open in-process is refused at once. */
const heldHere = new Set<string>();

let selfCache: LockOwner | undefined;

/** This process's identity as a lock owner. */
export async function selfOwner(): Promise<LockOwner> {
  if (selfCache) return selfCache;
  const base = { pid: process.pid, host: hostname(), ...(process.getuid ? { uid: process.getuid() } : {}) };
  try {
    const [boot, ns, stat] = await Promise.all([
      readFile('/proc/sys/kernel/random/boot_id', 'utf8'),
      readlink('/proc/self/ns/pid'),
      readFile(`/proc/${process.pid}/stat`, 'utf8'),
    ]);
    const parsed = parseStat(stat);
    const inode = /\[(\d+)\]/.exec(ns)?.[1];
    if (!parsed || inode === undefined) throw new Error('unreadable /proc');
    selfCache = { ...base, bootId: boot.trim(), pidNs: inode, startTime: parsed.startTime };
  } catch {
    selfCache = base;
  }
  return selfCache;
}

/** State (field 3) and start time (field 22) from the text of /proc/PID/stat (the name may hold spaces and parens). */
export function parseStat(text: string): { state: string; startTime: string } | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const fields = text.slice(close + 2).split(' ');
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || !/^\d+$/.test(startTime)) return null;
  return { state, startTime };
}

async function procStat(pid: number | string): Promise<{ state: string; startTime: string } | null> {
  try {
    return parseStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

const DEAD_STATES = new Set(['Z', 'X', 'x']);

/** Whether the owner of a lock is a live process (see the module comment). */
export async function judgeOwner(owner: LockOwner, self: LockOwner): Promise<Verdict> {
  if (
    owner.bootId === undefined ||
    self.bootId === undefined ||
    owner.startTime === undefined ||
    owner.pidNs === undefined
  ) {
    return judgeByPid(owner, self);
  }
  if (owner.bootId !== self.bootId) {
    if (owner.host === self.host) return { alive: false, why: 'it was taken before this host last booted' };
    return {
      alive: true,
      why: `it was taken on another host or boot (boot id ${owner.bootId}), which cannot be checked from here`,
    };
  }
  if (owner.pidNs === self.pidNs) {
    const st = await procStat(owner.pid);
    if (st === null) return { alive: false, why: 'no such process' };
    if (DEAD_STATES.has(st.state)) return { alive: false, why: 'the process is a zombie' };
    if (st.startTime !== owner.startTime)
      return { alive: false, why: 'the pid now belongs to another process' };
    return { alive: true, why: 'the process is running' };
  }
  return judgeInOtherNamespace(owner);
}

/**
 * The owner ran in another PID namespace of this kernel: look for it among the processes we can see (an
 * ancestor namespace sees its descendants' processes, with their pids there in NSpid). Not visible: the
 * namespace is gone (a container that restarted) or is a sibling we cannot see (see docs/operations.md).
 */
async function judgeInOtherNamespace(owner: LockOwner): Promise<Verdict> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return { alive: false, why: 'its PID namespace is gone' };
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const st = await procStat(name);
    if (st === null || st.startTime !== owner.startTime || DEAD_STATES.has(st.state)) continue;
    let ns: string;
    try {
      ns = await readlink(`/proc/${name}/ns/pid`);
    } catch {
      // Same start tick, but not ours to inspect: it may be the owner.
      return { alive: true, why: `process ${name} may be the owner (its namespace is not readable)` };
    }
    if (/\[(\d+)\]/.exec(ns)?.[1] !== owner.pidNs) continue;
    const status = await readFile(`/proc/${name}/status`, 'utf8').catch(() => '');
    const nspid = /^NSpid:\s*([\d\s]+)$/m.exec(status)?.[1]?.trim().split(/\s+/).at(-1);
    if (nspid === String(owner.pid)) {
      return { alive: true, why: `the process is running (pid ${name} in this PID namespace)` };
    }
  }
  return { alive: false, why: 'its PID namespace is gone (a restarted container)' };
}

/** Without /proc identities (an earlier-format lock, or not Linux). */
async function judgeByPid(owner: { pid: number; host: string }, self: LockOwner): Promise<Verdict> {
  if (owner.host !== self.host) {
    return { alive: true, why: `it was taken on host ${owner.host}, which cannot be checked from here` };
  }
  // We have not written it (a second open in this process is refused before judging): an earlier
  // incarnation with our pid, as in a container.
  if (owner.pid === self.pid)
    return { alive: false, why: 'it names this process’s pid: an earlier incarnation' };
  const st = await procStat(owner.pid);
  if (st !== null) {
    return DEAD_STATES.has(st.state)
      ? { alive: false, why: 'the process is a zombie' }
      : { alive: true, why: 'a process with that pid is running' };
  }
  try {
    process.kill(owner.pid, 0);
    return { alive: true, why: 'a process with that pid is running' };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EPERM'
      ? { alive: true, why: 'a process with that pid is running' }
      : { alive: false, why: 'no such process' };
  }
}

function sameOwner(a: LockOwner, b: LockOwner): boolean {
  return (
    a.pid === b.pid &&
    a.host === b.host &&
    a.bootId === b.bootId &&
    a.startTime === b.startTime &&
    a.pidNs === b.pidNs
  );
}

function parseRecord(text: string): LockRecord | null {
  try {
    const v = JSON.parse(text) as Partial<LockRecord> | null;
    const o = v?.owner;
    if (
      v?.format !== 2 ||
      (v.state !== 'held' && v.state !== 'released') ||
      typeof o !== 'object' ||
      o === null ||
      typeof o.pid !== 'number' ||
      typeof o.host !== 'string'
    ) {
      return null;
    }
    return v as LockRecord;
  } catch {
    return null;
  }
}

async function versions(dir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw ioError(err, dir, 'list');
  }
  const out: number[] = [];
  for (const n of names) {
    const m = VERSION_RE.exec(n);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

const versionName = (v: number) => `LOCK.${v}`;

/** Creates `LOCK.<version>` holding `record`, atomically and only if absent. False: it exists. */
async function createVersion(dir: string, version: number, record: LockRecord): Promise<boolean> {
  const path = join(dir, versionName(version));
  // Not *.tmp: recovery removes those, and this one may belong to a process that does not hold the lock.
  const tmp = join(dir, `LOCK.${record.nonce}.new`);
  try {
    await writeFile(tmp, `${JSON.stringify(record)}\n`, { flag: 'wx' });
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw await withFreeSpace(ioError(err, path, 'create lock file'), dir, 4096);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function removeBelow(dir: string, version: number): Promise<void> {
  for (const v of await versions(dir)) {
    if (v < version) await unlink(join(dir, versionName(v))).catch(() => undefined);
  }
}

/** A held data directory lock. */
export class DirLock {
  private released = false;
  private constructor(
    readonly dir: string,
    /** The version file this process holds: `LOCK.<version>`. */
    readonly version: number,
    private readonly key: string,
    private readonly owner: LockOwner,
  ) {}

  /** Takes the lock on `dir` (which must exist), or throws StorageLockedError naming the live holder. */
  static async acquire(dir: string): Promise<DirLock> {
    const key = resolve(dir);
    const self = await selfOwner();
    if (heldHere.has(key)) {
      throw new StorageLockedError(dir, self, { why: 'it is already open in this process' });
    }
    heldHere.add(key);
    try {
      await clearLegacyLock(dir, self);
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const top = (await versions(dir)).at(-1) ?? 0;
        if (top > 0) {
          const file = join(dir, versionName(top));
          let text: string;
          try {
            text = await readFile(file, 'utf8');
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed by a new holder: look again
            throw ioError(err, file, 'read lock file');
          }
          const rec = parseRecord(text);
          // An unreadable record was not written whole by anyone (records appear by link, complete): free.
          // A record naming this very process is a leftover of a release that could not be written (a full
          // disk): heldHere, not the file, says what this process holds.
          if (rec?.state === 'held' && !sameOwner(rec.owner, self)) {
            const v = await judgeOwner(rec.owner, self);
            if (v.alive) throw new StorageLockedError(dir, rec.owner, { why: v.why, file });
          }
        }
        const mine = top + 1;
        const record: LockRecord = {
          format: 2,
          state: 'held',
          owner: self,
          nonce: randomBytes(8).toString('hex'),
        };
        if (!(await createVersion(dir, mine, record))) continue; // another process moved first: judge it
        // Linked onto a number already removed below the highest? Then this file is not the lock.
        if ((await versions(dir)).at(-1) !== mine) {
          await unlink(join(dir, versionName(mine))).catch(() => undefined);
          continue;
        }
        await removeBelow(dir, mine);
        return new DirLock(dir, mine, key, self);
      }
      throw new StorageLockedError(dir, self, {
        why: `the lock changed hands ${MAX_ATTEMPTS} times while this process tried to take it`,
      });
    } catch (err) {
      heldHere.delete(key);
      throw err;
    }
  }

  /** Gives the lock up: writes the next version as released. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      const rec: LockRecord = {
        format: 2,
        state: 'released',
        owner: this.owner,
        nonce: randomBytes(8).toString('hex'),
      };
      // EEXIST would mean someone took over a live lock: nothing to release then.
      if (await createVersion(this.dir, this.version + 1, rec)) await removeBelow(this.dir, this.version + 1);
    } catch {
      // A lock left held by this (soon exiting) process is judged dead by the next opener.
    } finally {
      heldHere.delete(this.key);
    }
  }
}

/** Judges a `LOCK` of the earlier format; removes it when its owner is gone. */
async function clearLegacyLock(dir: string, self: LockOwner): Promise<void> {
  const path = join(dir, LEGACY_LOCK_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw ioError(err, path, 'read lock file');
  }
  let owner: { pid: number; host: string } | null = null;
  try {
    const v = JSON.parse(text) as { pid?: unknown; host?: unknown };
    if (typeof v.pid === 'number' && typeof v.host === 'string') owner = { pid: v.pid, host: v.host };
  } catch {
    owner = null;
  }
  if (owner) {
    const v = await judgeByPid(owner, self);
    if (v.alive) throw new StorageLockedError(dir, owner, { why: v.why, file: path });
  }
  await unlink(path).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, path, 'remove stale lock file');
  });
}
