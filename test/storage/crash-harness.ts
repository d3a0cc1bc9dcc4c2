/**
 * Crash testing with real processes: a child persists a seeded workload and prints every
 * acknowledged operation; the parent SIGKILLs it at a random moment, reopens the data
 * directory and checks that the recovered state is exactly the state after some prefix of
 * the workload that includes every acknowledged operation (the storage contract: "open
 * yields a prefix of what was persisted: everything whose persist had resolved, possibly
 * followed by some of what had not"). Rounds chain: each child continues from the state
 * the previous kill left behind, so recovery-then-crash paths are exercised too.
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
}

export interface RoundResult {
  readonly round: number;
  readonly acked: number;
  /** How many operations the recovered state reflects (>= acked). */
  readonly recovered: number;
  readonly killedBeforeReady: boolean;
}

interface ChildRun {
  readonly acked: number;
  readonly readyDigest: string | null;
}

function runChild(
  dir: string,
  seed: number,
  inflight: number,
  sync: string,
  killAfterMs: number,
  fromSpawn: boolean,
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
    const kill = (): void => void child.kill('SIGKILL');
    if (fromSpawn) timer = setTimeout(kill, killAfterMs);
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
          if (!fromSpawn) timer = setTimeout(kill, killAfterMs);
        }
        nl = buffered.indexOf('\n');
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
      resolve({ acked, readyDigest });
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
    const { acked, readyDigest } = await runChild(
      dir,
      childSeed,
      inflight,
      options.sync ?? 'fdatasync',
      killAfterMs,
      fromSpawn,
    );
    if (readyDigest !== null && readyDigest !== digest(state)) {
      throw new Error(
        `${where}: the child recovered a different state than the parent (${readyDigest} != ${digest(state)})`,
      );
    }
    // Regenerate the child's workload; the recovered state must be one of the states after
    // acked .. acked+inflight operations.
    const workload = new Workload(state, childSeed, { entrySize: 64, maxBatch: 8 });
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
      throw new Error(
        `${where}: recovered state (last index ${recoveredState.entries.at(-1)?.index ?? recoveredState.snapshot?.meta.index ?? 0}, ` +
          `hard state ${JSON.stringify(recoveredState.hardState)}) is not the state after any of operations ` +
          `${acked}..${acked + inflight} (acknowledged: ${acked})`,
      );
    }
    results.push({ round, acked, recovered: found, killedBeforeReady: readyDigest === null });
    options.log?.(
      `round ${round}: acked ${acked}, recovered ${found}${readyDigest === null ? ' (killed before ready)' : ''}`,
    );
    state = recoveredState;
  }
  return results;
}
