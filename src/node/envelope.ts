/**
 * The envelope RaftNode wraps around every proposal, so that the node that proposed an entry
 * recognises it when it is applied, whichever node was leader. Layout:
 *   [version=1][origin length][origin utf8][seq u32 hi][seq u32 lo][payload]
 *
 * Invariants:
 * - An entry whose bytes do not parse as an envelope (too short, another version, an origin
 *   longer than the data) is applied with its bytes as they are: `proposalPayload` and
 *   `envelopePayloadAt` never throw, whatever the bytes, so every member reaches the same result.
 * - Proposal numbers (and read contexts) are unique across runs of a node, not only within one:
 *   each start draws a random 52-bit (read contexts: 50-bit) starting point, the per-start
 *   nonce, and counts up from it. An entry this node proposed in an earlier run, applied after
 *   a restart, or a read answered for an earlier run, then matches nothing pending (two runs
 *   collide only if the ranges they use overlap: about (n1 + n2) / 2^52 for runs of n1 and n2
 *   proposals). Proposal numbers stay below 2^53, so they are exact in a double.
 * - Encoding allocates the envelope and nothing else; `envelopePayloadAt` and `ownSeq` allocate
 *   nothing (`ownSeq` expects bytes that `envelopePayloadAt` accepted).
 */
import { realRuntime } from './runtime.ts';

const ENVELOPE_VERSION = 1;

export function wrapProposal(origin: Uint8Array, seq: number, payload: Uint8Array): Uint8Array {
  // allocUnsafe: small envelopes come from Node's buffer pool, not a fresh ArrayBuffer each.
  const out = Buffer.allocUnsafe(2 + origin.length + 8 + payload.length);
  out[0] = ENVELOPE_VERSION;
  out[1] = origin.length;
  out.set(origin, 2);
  let o = 2 + origin.length;
  const hi = Math.floor(seq / 0x100000000);
  const lo = seq >>> 0;
  out[o++] = hi >>> 24;
  out[o++] = (hi >>> 16) & 0xff;
  out[o++] = (hi >>> 8) & 0xff;
  out[o++] = hi & 0xff;
  out[o++] = lo >>> 24;
  out[o++] = (lo >>> 16) & 0xff;
  out[o++] = (lo >>> 8) & 0xff;
  out[o++] = lo & 0xff;
  out.set(payload, o);
  return out;
}

/** Offset of the payload in an envelope, or -1 when `data` is not one. */
export function envelopePayloadAt(data: Uint8Array): number {
  if (data.length < 10 || data[0] !== ENVELOPE_VERSION) return -1;
  const at = 2 + (data[1] as number) + 8;
  return data.length < at ? -1 : at;
}

/** The application payload of an entry proposed through a RaftNode (`data` itself when it carries no envelope). */
export function proposalPayload(data: Uint8Array): Uint8Array {
  const at = envelopePayloadAt(data);
  return at < 0 ? data : data.subarray(at);
}

/** The sequence number of an envelope (checked by envelopePayloadAt) when `origin` proposed it, else -1. */
export function ownSeq(data: Uint8Array, origin: Uint8Array): number {
  const n = data[1] as number;
  if (n !== origin.length) return -1;
  for (let i = 0; i < n; i++) if (data[2 + i] !== origin[i]) return -1;
  const o = 2 + n;
  const hi = ((data[o]! << 24) | (data[o + 1]! << 16) | (data[o + 2]! << 8) | data[o + 3]!) >>> 0;
  const lo = ((data[o + 4]! << 24) | (data[o + 5]! << 16) | (data[o + 6]! << 8) | data[o + 7]!) >>> 0;
  return hi * 0x100000000 + lo;
}

/** A random start for a run's proposal numbers: below 2^52, so 2^52 proposals fit under 2^53. */
export function randomProposalStart(randomInt: (max: number) => number = realRuntime.randomInt): number {
  return randomInt(0x100000) * 0x100000000 + randomInt(0x100000000);
}

/** A random start for a run's read contexts: below 2^50 (the peer codec carries up to 2^51). */
export function randomReadStart(randomInt: (max: number) => number = realRuntime.randomInt): number {
  return randomInt(0x40000) * 0x100000000 + randomInt(0x100000000);
}
