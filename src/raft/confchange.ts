/**
 * Membership changes, one member at a time (Raft dissertation §4.1 with the fix of
 * §4.1.1's erratum: a leader proposes a change only after an entry of its own term is
 * committed and every earlier change is applied).
 *
 * Invariants: a node is never both voter and learner; applying a change is a pure
 * function of (configuration, change), so every node derives the same configuration
 * from the same log. Decoding is total: {@link parseConfChange} gives a result for any
 * bytes, and an entry that does not decode is a no-op for the configuration on every
 * member (the same bytes fail the same way everywhere), never a stopped node.
 */
import { RaftError } from './errors.ts';
import { type ConfChange, ConfChangeType, type ConfState, type NodeId } from './types.ts';

/** Bytes that are not a configuration change (from {@link decodeConfChange}). */
export class ConfChangeError extends RaftError {
  override readonly name = 'ConfChangeError';
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify(cc));
}

/** Longest node id a configuration change may name, in UTF-16 code units. */
export const MAX_NODE_ID_LENGTH = 255;

/** The outcome of decoding a configuration change entry: a change, or why the bytes are not one. */
export type ParsedConfChange =
  | { readonly ok: true; readonly cc: ConfChange }
  | { readonly ok: false; readonly reason: string };

/** Decode a configuration change entry; never throws (the reason names what was wrong). */
export function parseConfChange(data: Uint8Array): ParsedConfChange {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(data));
  } catch {
    return { ok: false, reason: 'configuration change entry is not valid JSON' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return { ok: false, reason: 'configuration change entry is not an object' };
  const o = v as Record<string, unknown>;
  const type = o['type'];
  const node = o['node'];
  if (
    type !== ConfChangeType.AddVoter &&
    type !== ConfChangeType.AddLearner &&
    type !== ConfChangeType.Remove
  ) {
    return {
      ok: false,
      reason: `unknown configuration change type ${String(JSON.stringify(type)).slice(0, 64)}`,
    };
  }
  if (typeof node !== 'string' || node === '')
    return { ok: false, reason: 'configuration change without a node id' };
  if (node.length > MAX_NODE_ID_LENGTH)
    return { ok: false, reason: `configuration change node id longer than ${MAX_NODE_ID_LENGTH}` };
  const context = o['context'];
  if (context !== undefined && typeof context !== 'string')
    return { ok: false, reason: 'configuration change context is not a string' };
  return { ok: true, cc: typeof context === 'string' ? { type, node, context } : { type, node } };
}

/** Decode a configuration change entry, throwing {@link ConfChangeError} when it is not one. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  const p = parseConfChange(data);
  if (!p.ok) throw new ConfChangeError(p.reason);
  return p.cc;
}

/** The configuration after applying `cc` (unchanged if `cc` is a no-op for it). */
export function applyConfChange(conf: ConfState, cc: ConfChange): ConfState {
  const voters = conf.voters.filter((id) => id !== cc.node);
  const learners = conf.learners.filter((id) => id !== cc.node);
  if (cc.type === ConfChangeType.AddVoter) voters.push(cc.node);
  else if (cc.type === ConfChangeType.AddLearner) learners.push(cc.node);
  return { voters, learners };
}

/** Why `cc` may not be proposed against `conf`, or null if it may. */
export function validateConfChange(conf: ConfState, cc: ConfChange): string | null {
  const isVoter = conf.voters.includes(cc.node);
  const isLearner = conf.learners.includes(cc.node);
  switch (cc.type) {
    case ConfChangeType.AddVoter:
      return isVoter ? `${cc.node} is already a voter` : null;
    case ConfChangeType.AddLearner:
      if (isVoter) return `${cc.node} is a voter; demoting a voter to learner is not supported`;
      return isLearner ? `${cc.node} is already a learner` : null;
    case ConfChangeType.Remove:
      if (!isVoter && !isLearner) return `${cc.node} is not a member`;
      if (isVoter && conf.voters.length === 1) return `cannot remove ${cc.node}, the last voter`;
      return null;
  }
}

export function isMember(conf: ConfState, id: NodeId): boolean {
  return conf.voters.includes(id) || conf.learners.includes(id);
}
