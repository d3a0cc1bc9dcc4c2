/**
 * Helpers for scenario tests on the deterministic simulator (in the spirit of the MIT
 * 6.824 Raft tests, but with virtual time: no test depends on the machine's speed).
 */
import assert from 'node:assert/strict';
import { decodeRequest, encodeRequest } from '../../src/kv/state-machine.ts';
import { proposalPayload } from '../../src/node/envelope.ts';
import type { NodeId } from '../../src/raft/types.ts';
import { type SimOptions, Simulator } from '../../src/sim/simulator.ts';

export function cluster(n: number, seed: number, opts: Partial<SimOptions> = {}): Simulator {
  return new Simulator({ seed, voters: n, ...opts });
}

/** A command the simulator's KV state machine accepts: put t = s. */
export function data(s: string, key = 't'): Uint8Array {
  return encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key, value: s } });
}

/** The value a command made by {@link data} carries (in a RaftNode proposal envelope or not). */
export function payload(bytes: Uint8Array | undefined): string | undefined {
  if (!bytes || bytes.byteLength === 0) return undefined;
  const cmd = decodeRequest(proposalPayload(bytes)).cmd;
  return cmd.kind === 'delete' ? undefined : cmd.value;
}

/** Live nodes that applied at least `index`. */
export function appliedCount(sim: Simulator, index: number): number {
  let k = 0;
  for (const id of sim.ids) {
    const n = sim.node(id);
    if (n.alive && n.raft && n.raft.status().applied >= index) k++;
  }
  return k;
}

/**
 * Submit `cmd` to whichever node is leader, retrying until `expected` nodes applied it
 * (or `maxMs` of virtual time passes). Returns the index it was committed at.
 */
export async function one(
  sim: Simulator,
  cmd: string,
  expected: number,
  maxMs = 10_000,
  retry = true,
  key = 't',
): Promise<number> {
  const deadline = sim.now + maxMs;
  while (sim.now < deadline) {
    const l = sim.leader();
    if (l) {
      const out = sim.propose(l, data(cmd, key));
      if (out.kind === 'appended') {
        const idx = out.index;
        const ok = await sim.runUntil(() => appliedCount(sim, idx) >= expected, 2_000);
        if (ok && holds(sim, idx, cmd)) return idx;
        if (!retry) break;
        continue;
      }
    }
    await sim.runFor(50);
  }
  return assert.fail(`one(${cmd}) failed to reach agreement on ${expected} nodes`);
}

/** Whether the entry at `index` on some node that applied it carries `cmd`. */
function holds(sim: Simulator, index: number, cmd: string): boolean {
  for (const id of sim.ids) {
    const r = sim.node(id).raft;
    const e = r?.entryAt(index);
    if (e && r && r.status().applied >= index) return payload(e.data) === cmd;
  }
  return true; // compacted everywhere: the invariants already checked what was applied
}

export async function checkOneLeader(sim: Simulator, maxMs = 5_000): Promise<NodeId> {
  const l = await sim.waitForLeader(maxMs);
  if (l === null) return assert.fail('expected a leader');
  return l;
}

export function checkNoLeader(sim: Simulator, among: readonly NodeId[]): void {
  for (const id of among) {
    const n = sim.node(id);
    if (n.alive && n.raft) assert.notEqual(n.raft.currentRole, 'leader', `${id} should not be leader`);
  }
}

export function terms(sim: Simulator): number {
  let t = -1;
  for (const id of sim.ids) {
    const r = sim.node(id).raft;
    if (r) t = Math.max(t, r.currentTerm);
  }
  return t;
}

export function totalSent(sim: Simulator): number {
  let k = 0;
  for (const v of sim.sent.values()) k += v;
  return k;
}
