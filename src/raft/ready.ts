/**
 * Helpers of the Ready batch (the contract itself is on the Ready type in types.ts): what
 * changed since the last Ready, and the coalescing of acknowledgements.
 *
 * Invariant: coalescing keeps every message but the successful append acknowledgements
 * to one leader in one term that a higher one of the same batch supersedes (they are
 * cumulative), and keeps the order of the rest.
 */
import { type AppendResponse, type HardState, type Message, MessageType, type SoftState } from './types.ts';

export function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

export function sameSoft(a: SoftState, b: SoftState): boolean {
  return a.role === b.role && a.leader === b.leader;
}

/**
 * Successful append acknowledgements to one leader in one term are cumulative: keep only
 * the highest (a follower acknowledges a whole batch with one message).
 */
export function coalesceAcks(msgs: Message[]): Message[] {
  let acks = 0;
  for (const m of msgs) if (m.type === MessageType.AppendResp && !m.reject) acks++;
  if (acks < 2) return msgs;
  const best = new Map<string, AppendResponse>();
  for (const m of msgs) {
    if (m.type !== MessageType.AppendResp || m.reject) continue;
    const k = `${m.to}\u0000${m.term}`;
    const b = best.get(k);
    if (!b || m.index > b.index) best.set(k, m);
  }
  const out: Message[] = [];
  for (const m of msgs) {
    if (m.type === MessageType.AppendResp && !m.reject) {
      const k = `${m.to}\u0000${m.term}`;
      const b = best.get(k);
      if (b !== m) continue;
    }
    out.push(m);
  }
  return out;
}
