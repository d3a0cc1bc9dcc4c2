/**
 * One nemesis run: a NetLab, `raftkv serve` in each namespace, pinned clients through
 * every node, and `cycles` faults, each held then healed; then every key read back
 * linearizably and the whole history checked with src/check/.
 *
 * A run passes when: the history (final reads included) is linearizable, so every
 * acknowledged write is in the final state unless a later write replaced it; after every
 * heal each node acknowledged a write within `recoverMs` (for a kill, counted from when the
 * restarted process answers, which must happen within `startMs`); no node exited by itself.
 *
 * Invariants: whatever happens (an error, the abort signal), the lab, its processes and
 * the clients are gone when `runNemesis` returns; the data directory and logs are kept
 * when the run failed or `keep` is set (with the history and faults in history.jsonl),
 * and their path is in the report.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kvModel } from '../../src/check/kv-model.ts';
import { checkLinearizable } from '../../src/check/linearizability.ts';
import { SeededRng } from '../../src/raft/rng.ts';
import { type FaultPlan, planFault, Schedule } from './faults.ts';
import { computeFigures, type FaultRecord, type Figures } from './figures.ts';
import { NetLab } from './netlab.ts';
import { BUILT_MAIN, NsCluster } from './nodes.ts';
import { checkedHistory, type OpRecord, Workload } from './workload.ts';

export interface NemesisOptions {
  readonly nodes: number;
  readonly cycles: number;
  readonly seed: number;
  /** How long a fault is held: uniform in [min, max] ms. */
  readonly holdMs: readonly [number, number];
  /** Quiet time after each recovery, ms. */
  readonly calmMs: number;
  readonly clientsPerNode: number;
  readonly opTimeoutMs: number;
  readonly thinkMs: number;
  /** A client's pause after a failed or indeterminate call, ms. */
  readonly backoffMs: number;
  readonly keysPerCycle: number;
  /** After a heal (and the restart of killed nodes), every node must acknowledge a write within this, ms. */
  readonly recoverMs: number;
  /** A killed node, started again at the heal, must answer within this, ms. */
  readonly startMs: number;
  /** Extra `raftkv serve` flags, e.g. ['--tick-ms', '100']. */
  readonly serveArgs: readonly string[];
  readonly keep: boolean;
  /** Run the compiled CLI (bin/raftkv.mjs; `npm run build` first) instead of the sources with tsx. */
  readonly built: boolean;
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal;
  /** Called once the cluster is up (the lab's number and the nodes' pids), e.g. for tests. */
  readonly onReady?: (info: { lab: number; pids: Record<string, number> }) => void;
}

export const DEFAULTS: Omit<NemesisOptions, 'log'> = {
  nodes: 5,
  cycles: 10,
  seed: 1,
  holdMs: [2_000, 4_000],
  calmMs: 1_000,
  clientsPerNode: 2,
  opTimeoutMs: 1_500,
  thinkMs: 10,
  backoffMs: 100,
  keysPerCycle: 16,
  recoverMs: 30_000,
  startMs: 120_000,
  serveArgs: [],
  keep: false,
  built: false,
};

export interface NemesisReport {
  readonly ok: boolean;
  /** What went wrong (empty when ok). */
  readonly failures: readonly string[];
  readonly figures: Figures;
  readonly faults: readonly FaultRecord[];
  /** The checker's verdict in one line. */
  readonly verdict: string;
  /** Keys read back at the end, and how many held a value. */
  readonly finalKeys: number;
  readonly finalPresent: number;
  /** Data directories and logs; removed when the run passed unless `keep`. */
  readonly dir: string;
  readonly kept: boolean;
}

export class NemesisAborted extends Error {
  override readonly name = 'NemesisAborted';
  constructor() {
    super('the run was interrupted');
  }
}

/** Checks a history (final reads included) against the KV model; `null` when linearizable. */
export function verdictOf(ops: readonly OpRecord[], maxStates = 2_000_000): { ok: boolean; text: string } {
  const history = checkedHistory(ops);
  const r = checkLinearizable(kvModel, history, { maxStates });
  if (r.ok === true)
    return {
      ok: true,
      text: `linearizable (${history.length} operations, ${r.partitions} keys, ${r.states} states)`,
    };
  if (r.ok === 'unknown') return { ok: false, text: `undecided for key ${r.partition}: ${r.reason}` };
  return { ok: false, text: `NOT linearizable, key ${r.partition}:\n${r.explanation}` };
}

export async function runNemesis(opts: NemesisOptions): Promise<NemesisReport> {
  if (opts.nodes < 3) throw new RangeError(`--nodes must be 3 or more, not ${opts.nodes}`);
  if (opts.built && !existsSync(BUILT_MAIN))
    throw new RangeError(`--built needs the compiled CLI (${BUILT_MAIN} is missing): run npm run build`);
  const ids = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
  const rng = new SeededRng(opts.seed);
  const schedule = new Schedule(opts.nodes, rng.fork());
  const faultRng = rng.fork();
  const holdRng = rng.fork();
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const log = (s: string) => opts.log(`[${(now() / 1000).toFixed(1).padStart(7)}s] ${s}`);
  const failures: string[] = [];
  const faults: FaultRecord[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'raftkv-nemesis-'));

  const aborted = () => opts.signal?.aborted === true;
  const sleep = (ms: number) =>
    new Promise<void>((resolve, reject) => {
      if (aborted()) return reject(new NemesisAborted());
      const t = setTimeout(done, ms);
      function done() {
        opts.signal?.removeEventListener('abort', onAbort);
        resolve();
      }
      function onAbort() {
        clearTimeout(t);
        reject(new NemesisAborted());
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });

  let lab: NetLab | undefined;
  let cluster: NsCluster | undefined;
  let wl: Workload | undefined;
  let finalKeys = 0;
  let finalPresent = 0;
  let verdict = 'not checked';
  try {
    lab = await NetLab.create(ids);
    log(
      `lab ${lab.n}: namespaces ${lab.ns('n1')}.., nodes at ${lab.ip('n1')}.., host ${lab.hostIp}; data in ${dir}`,
    );
    const c = new NsCluster(lab, dir, opts.serveArgs, opts.built);
    cluster = c;
    for (const id of ids) c.start(id);
    const w = new Workload({
      nodes: new Map(ids.map((id) => [id, c.address(id)])),
      clientsPerNode: opts.clientsPerNode,
      seed: rng.u32(),
      opTimeoutMs: opts.opTimeoutMs,
      thinkMs: opts.thinkMs,
      backoffMs: opts.backoffMs,
      keysPerWindow: opts.keysPerCycle,
      now,
    });
    wl = w;

    // Leader of the highest term any node reports, or '' if none says it leads.
    const findLeader = async (): Promise<string> => {
      const st = await Promise.all(ids.map((id) => w.status(id, 1_000).catch(() => undefined)));
      let best = '';
      let term = -1;
      for (const s of st) {
        if (s?.['role'] === 'leader' && Number(s['term']) > term) {
          term = Number(s['term']);
          best = String(s['id']);
        }
      }
      return best;
    };
    // Every node acknowledges a write (probe/<id>) before `until`; returns the time all had.
    let seq = 0; // probe values, like all values written, are unique in the run
    const everyNodeWrites = async (until: number): Promise<number | null> => {
      const one = async (id: string): Promise<number | null> => {
        while (now() < until) {
          const op = await w.invoke(
            id,
            { kind: 'put', key: `probe/${id}`, value: `p.${id}.${++seq}` },
            2_000,
          );
          if (op.outcome === 'ok') return op.ret;
          await sleep(100);
        }
        return null;
      };
      const r = await Promise.all(ids.map(one));
      if (r.some((x) => x === null)) return null;
      return Math.max(...(r as number[]));
    };

    // Up: every node answers and one leads (not recorded), then every node takes a write.
    const upBy = now() + 60_000;
    while (now() < upBy) {
      const st = await Promise.all(ids.map((id) => w.status(id, 1_000).catch(() => undefined)));
      if (st.every((x) => x !== undefined) && (await findLeader()) !== '') break;
      await sleep(200);
    }
    const up = await everyNodeWrites(upBy);
    if (up === null) throw new Error(`the cluster did not come up within 60 s:\n${tails(c, ids)}`);
    const pids: Record<string, number> = {};
    for (const id of ids) pids[id] = c.pid(id) ?? 0;
    log(`cluster up: leader ${await findLeader()}, pids ${JSON.stringify(pids)}`);
    opts.onReady?.({ lab: lab.n, pids });
    w.start();

    for (let cycle = 1; cycle <= opts.cycles; cycle++) {
      w.setWindow(`c${cycle}`);
      const kind = schedule.next();
      const leader = await findLeader();
      const plan: FaultPlan = planFault(kind, ids, leader, faultRng);
      const hold = opts.holdMs[0] + holdRng.int(opts.holdMs[1] - opts.holdMs[0] + 1);
      const f: FaultRecord = {
        cycle,
        kind,
        description: plan.description,
        start: now(),
        healed: null,
        serving: null,
        recovered: null,
      };
      faults.push(f);
      log(`cycle ${cycle}/${opts.cycles}: ${plan.description}, held ${hold} ms`);
      // Bookkeeping before acting: a heal after an abort mid-fault must undo exactly this.
      try {
        if (plan.cuts.length > 0) await lab.apply(plan.cuts);
        for (const id of plan.pause) c.signal(id, 'SIGSTOP');
        for (const id of plan.kill) await c.kill(id);
        await sleep(hold);
      } finally {
        if (!aborted()) {
          if (plan.cuts.length > 0) await lab.apply([]);
          for (const id of plan.pause) c.signal(id, 'SIGCONT');
          for (const id of plan.kill) if (!c.running(id)) c.start(id);
        }
      }
      f.healed = now();
      // A restarted process first has to start (seconds on a busy machine): the recovery
      // clock starts once it answers, and its start-up has a bound of its own.
      const startBy = f.healed + opts.startMs;
      for (const id of plan.kill) {
        while (
          now() < startBy &&
          !(await w.status(id, 1_000).then(
            () => true,
            () => false,
          ))
        )
          await sleep(100);
      }
      if (now() >= startBy) {
        failures.push(
          `cycle ${cycle} (${plan.description}): ${plan.kill.join(' ')} did not start within ${opts.startMs} ms`,
        );
        log(failures[failures.length - 1] as string);
        break;
      }
      f.serving = now();
      f.recovered = await everyNodeWrites(f.serving + opts.recoverMs);
      if (f.recovered === null) {
        failures.push(
          `cycle ${cycle} (${plan.description}): not every node took a write within ${opts.recoverMs} ms of the heal${plan.kill.length > 0 ? ' and restart' : ''}`,
        );
        log(failures[failures.length - 1] as string);
        break;
      }
      const unavailable = firstAckAfter(w.ops, f.start);
      log(
        `  healed; first write acknowledged ${unavailable === null ? '-' : `${((unavailable - f.start) / 1000).toFixed(2)} s`} after the fault began, every node writing ${((f.recovered - f.serving) / 1000).toFixed(2)} s after the heal${plan.kill.length > 0 ? ` and a restart of ${((f.serving - f.healed) / 1000).toFixed(2)} s` : ''}`,
      );
      if (c.unexpectedExits.length > 0) break;
      await sleep(opts.calmMs);
    }

    await w.stop();
    for (const e of c.unexpectedExits) failures.push(e);
    // Read every key back, linearizably, through the nodes in turn.
    const keys = [...w.keys].sort();
    finalKeys = keys.length;
    log(`workload stopped (${w.ops.length} ops); reading back ${keys.length} keys`);
    const readUntil = now() + 60_000;
    for (const [i, key] of keys.entries()) {
      let read = false;
      let last = 'no time left';
      for (let j = 0; !read && now() < readUntil; j++) {
        const op = await w.invoke(ids[(i + j) % ids.length] as string, { kind: 'get', key }, 3_000);
        read = op.outcome === 'ok';
        if (read && op.output?.kind === 'get' && op.output.value !== null) finalPresent++;
        if (!read) {
          last = op.error;
          await sleep(100);
        }
      }
      if (!read) {
        failures.push(`could not read every key back within 60 s (${key}: ${last})`);
        break;
      }
    }
    log('checking the history');
    const v = verdictOf(w.ops);
    verdict = v.text;
    if (!v.ok) failures.push(v.text);
  } catch (e) {
    if (e instanceof NemesisAborted) failures.push('interrupted');
    else failures.push(`error: ${(e as Error).stack ?? String(e)}`);
  } finally {
    wl?.close();
    if (failures.length > 0 && !aborted() && cluster) {
      for (const id of ids)
        log(`--- ${id} (last lines of ${join(dir, `${id}.log`)})\n${cluster.tail(id, 8)}`);
    }
    await cluster?.destroy();
    lab?.destroy();
  }
  const ok = failures.length === 0;
  // An interrupted run is no finding: its data goes unless asked to keep it.
  const kept = opts.keep || (!ok && !aborted());
  if (!kept) rmSync(dir, { recursive: true, force: true });
  else {
    // The history and the faults, one JSON object a line, for a closer look.
    const lines = [
      ...faults.map((f) => JSON.stringify({ fault: f })),
      ...(wl?.ops ?? []).map((o) => JSON.stringify(o)),
    ];
    writeFileSync(join(dir, 'history.jsonl'), `${lines.join('\n')}\n`);
  }
  const figures = computeFigures(opts.nodes, wl?.ops ?? [], faults, now());
  return { ok, failures, figures, faults, verdict, finalKeys, finalPresent, dir, kept };
}

function firstAckAfter(ops: readonly OpRecord[], t: number): number | null {
  let first: number | null = null;
  for (const o of ops) {
    if (o.input.kind === 'get' || o.outcome !== 'ok' || o.call < t || o.ret === null) continue;
    if (first === null || o.ret < first) first = o.ret;
  }
  return first;
}

function tails(c: NsCluster, ids: readonly string[]): string {
  return ids.map((id) => `--- ${id}\n${c.tail(id, 10)}`).join('\n');
}
