/**
 * Crash testing with real processes: a child persists a seeded workload and prints every
 * acknowledged operation; the parent SIGKILLs it at a random moment, reopens the data
 * directory and checks that the recovered state is exactly the state after some prefix of
 * the workload that includes every acknowledged operation (the storage contract: "open
 * yields a prefix of what was persisted: everything whose persist had resolved, possibly
 * followed by some of what had not"). Rounds chain: each child continues from the state
 * the previous kill left behind, so recovery-then-crash paths are exercised too.
 *
 * The ack count is exact only because the child counts an ack, and lets its operation leave
 * the window, once the line is in the kernel (see fixtures/crash-child.ts): every ack in the
 * kernel at the kill is read before 'close', so the recovered state is at most `inflight`
 * operations past the count. `parentStall` makes the parent stop reading for a while and
 * kill before it reads again, the case that broke this (the child ran ahead by ~130).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { DurableState } from '../../src/raft/types.ts';
import { FileStorage } from '../../src/storage/file-storage.ts';
import { LogView } from '../../src/storage/log-view.ts';
import { describe, rng } from './helpers.ts';
import { Workload } from './workload.ts';

const CHILD = fileURLToPath(new URL('./fixtures/crash-child.ts', import.meta.url));
const ID = { nodeId: 'n1', clusterId: 'crash' } as const;
/** The workload options the child and the parent both use. */
export const WORKLOAD = { entrySize: 64, maxBatch: 8 } as const;

export function digest(state: DurableState): string {
  return createHash('sha256')
    .update(JSON.stringify(describe(state)))
    .digest('hex')
    .slice(0, 16);
}

export interface CrashOptions {
  readonly dir: string;
  readonly rounds: number;
  readonly seed: number;
  /** Operations the child keeps in flight (group commit). */
  readonly inflight?: number;
  /** Longest time the child runs after it is ready before the kill. */
  readonly maxRunMs?: number;
  readonly log?: (line: string) => void;
  /** FileStorage's sync mode in the child. */
  readonly sync?: 'fdatasync' | 'dsync' | 'dsync-inline';
  /** Replaces the random kill of every round by a parent stall (see ParentStall). */
  readonly parentStall?: ParentStall;
}

/**
 * The parent stops reading the child's acks and then kills it before reading again, as when
 * its event loop is busy (another chain's verification) or the machine is loaded: once
 * `afterAcks` acks are in, it sleeps long enough for the child to make about `acks` more at the
 * rate seen so far (at most `maxMs`), then SIGKILLs it. The child must not get ahead meanwhile.
 */
export interface ParentStall {
  readonly afterAcks: number;
  readonly acks: number;
  readonly maxMs: number;
}

/** A child that never reaches `afterAcks` is killed after this long, without a stall. */
const STALL_FALLBACK_MS = 30_000;

/** Blocks this thread (and so its event loop) for `ms` without spinning a core. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export interface RoundResult {
  readonly round: number;
  readonly acked: number;
  /** How many operations the recovered state reflects (>= acked). */
  readonly recovered: number;
  readonly killedBeforeReady: boolean;
  /** How long the parent stopped reading before the kill (0: a random kill, no stall). */
  readonly parentStallMs: number;
}

interface ChildRun {
  readonly acked: number;
  readonly readyDigest: string | null;
  readonly stalledMs: number;
}

function runChild(
  dir: string,
  seed: number,
  inflight: number,
  sync: string,
  killAfterMs: number,
  fromSpawn: boolean,
  stall: ParentStall | undefined,
): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(
      process.execPath,
      ['--import', 'tsx', CHILD, dir, String(seed), String(inflight), sync],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let acked = 0;
    let readyDigest: string | null = null;
    let buffered = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    let readyAt = 0;
    let stalledMs = 0;
    const kill = (): void => void child.kill('SIGKILL');
    if (stall !== undefined) timer = setTimeout(kill, STALL_FALLBACK_MS);
    else if (fromSpawn) timer = setTimeout(kill, killAfterMs);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buffered += chunk;
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('ack ')) {
          const n = Number(line.slice(4));
          if (n !== acked + 1) reject(new Error(`acks out of order: ${n} after ${acked}`));
          acked = n;
        } else if (line.startsWith('ready ')) {
          readyDigest = line.slice(6);
          readyAt = performance.now();
          if (!fromSpawn && stall === undefined) timer = setTimeout(kill, killAfterMs);
        }
        nl = buffered.indexOf('\n');
      }
      if (stall !== undefined && stalledMs === 0 && readyDigest !== null && acked >= stall.afterAcks) {
        const perMs = acked / Math.max(1, performance.now() - readyAt);
        stalledMs = Math.max(1, Math.min(stall.maxMs, Math.ceil(stall.acks / perMs)));
        sleepSync(stalledMs);
        kill();
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') {
        reject(new Error(`child exited with code ${code} signal ${signal} before the kill:\n${stderr}`));
        return;
      }
      resolve({ acked, readyDigest, stalledMs });
    });
  });
}

/** Runs `rounds` kill/recover rounds on `dir`; throws with a replayable description on any violation. */
export async function crashRounds(options: CrashOptions): Promise<RoundResult[]> {
  const { dir, rounds, seed } = options;
  const inflight = options.inflight ?? 4;
  const maxRunMs = options.maxRunMs ?? 150;
  const rand = rng(seed);
  const results: RoundResult[] = [];
  let state: DurableState = new LogView().state();
  for (let round = 0; round < rounds; round++) {
    const childSeed = Math.floor(rand() * 2 ** 31);
    // One round in eight kills the child early, possibly while it is still recovering.
    const fromSpawn = rand() < 0.125;
    const killAfterMs = Math.floor(rand() * (fromSpawn ? 600 : maxRunMs));
    const where = `seed=${seed} round=${round} childSeed=${childSeed} dir=${dir}`;
    const { acked, readyDigest, stalledMs } = await runChild(
      dir,
      childSeed,
      inflight,
      options.sync ?? 'fdatasync',
      killAfterMs,
      fromSpawn,
      options.parentStall,
    );
    if (readyDigest !== null && readyDigest !== digest(state)) {
      throw new Error(
        `${where}: the child recovered a different state than the parent (${readyDigest} != ${digest(state)})`,
      );
    }
    // Regenerate the child's workload; the recovered state must be one of the states after
    // acked .. acked+inflight operations.
    const workload = new Workload(state, childSeed, WORKLOAD);
    const candidates = new Map<string, number>();
    if (acked === 0) candidates.set(digest(state), 0);
    for (let n = 1; n <= acked + inflight; n++) {
      workload.next();
      if (n >= acked) candidates.set(digest(workload.state()), n);
    }
    const storage = await FileStorage.open(dir, ID);
    const recoveredState = storage.initialState();
    await storage.close();
    const found = candidates.get(digest(recoveredState));
    if (found === undefined) {
      const limit = acked + inflight + SEARCH_BEYOND;
      const actual = whichOperation(state, childSeed, recoveredState, limit);
      throw new Error(
        `${where}: recovered state (last index ${recoveredState.entries.at(-1)?.index ?? recoveredState.snapshot?.meta.index ?? 0}, ` +
          `hard state ${JSON.stringify(recoveredState.hardState)}) is not the state after any of operations ` +
          `${acked}..${acked + inflight} (acknowledged: ${acked}); ${explain(actual, acked, inflight, limit)}`,
      );
    }
    results.push({
      round,
      acked,
      recovered: found,
      killedBeforeReady: readyDigest === null,
      parentStallMs: stalledMs,
    });
    options.log?.(
      `round ${round}: acked ${acked}, recovered ${found}${readyDigest === null ? ' (killed before ready)' : ''}`,
    );
    state = recoveredState;
  }
  return results;
}

/** How far past the window a failing round looks for the state it recovered. */
const SEARCH_BEYOND = 10_000;

function explain(actual: number | null, acked: number, inflight: number, limit: number): string {
  if (actual === null)
    return `nor after any of operations 0..${limit}: storage recovered a state the workload never had`;
  if (actual < acked)
    return `it is the state after operation ${actual}: acknowledged operations ${actual + 1}..${acked} were LOST`;
  return (
    `it is the state after operation ${actual}, ${actual - acked - inflight} past the window: the child ran ahead ` +
    'of the acks the parent read (a harness fault; nothing acknowledged was lost)'
  );
}

/**
 * The first n in 0..limit such that `n` operations of the workload (`start`, `seed`) leave
 * exactly `target`, or null. Digests only the states whose last index and hard state match.
 */
export function whichOperation(
  start: DurableState,
  seed: number,
  target: DurableState,
  limit: number,
): number | null {
  const want = digest(target);
  const lastOf = (s: DurableState): number => s.entries.at(-1)?.index ?? s.snapshot?.meta.index ?? 0;
  const key = (s: DurableState): string =>
    `${lastOf(s)} ${s.hardState.term} ${s.hardState.vote} ${s.hardState.commit}`;
  const wantKey = key(target);
  const workload = new Workload(start, seed, WORKLOAD);
  for (let n = 0; n <= limit; n++) {
    if (n > 0) workload.next();
    const s = workload.state();
    if (key(s) === wantKey && digest(s) === want) return n;
  }
  return null;
}
