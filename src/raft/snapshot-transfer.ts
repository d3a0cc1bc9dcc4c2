/**
 * InstallSnapshot in resumable chunks (Raft dissertation §5): the leader's side builds the
 * next chunk for a follower from its Progress ({@link nextSnapshotChunk}); the follower's
 * side reassembles the chunks ({@link SnapshotReceiver}). Each chunk carries the snapshot's
 * meta and its byte offset; every acknowledgement tells the leader how many bytes of that
 * snapshot the follower holds, so a lost chunk, a new leader or a restart on either side
 * resumes from there (or from 0).
 *
 * Invariants: the leader has at most one chunk in flight per follower and sends it from
 * `pr.snapshotOffset`, the follower's last acknowledged size; a newer snapshot replaces the
 * one being sent and starts at offset 0. The receiver holds the chunks of one snapshot
 * (meta index and term) with `size` = the sum of their lengths, accepts a chunk only at
 * offset 0 (a fresh start) or at exactly `size`, and hands out the snapshot only when the
 * chunk marked `done` arrives in order. Installing it is raft.ts's business.
 */
import type { Progress } from './progress.ts';
import type { NodeId, Snapshot, SnapshotMeta, SnapshotRequest } from './types.ts';
import { MessageType } from './types.ts';

/**
 * The next chunk of `snap` for the follower of `pr` (restarting if `snap` is newer than the
 * one being sent), or null when every byte is sent and the final acknowledgement is awaited.
 */
export function nextSnapshotChunk(
  pr: Progress,
  snap: Snapshot,
  maxChunk: number,
  from: NodeId,
  term: number,
): SnapshotRequest | null {
  if (snap.meta.index !== pr.pendingSnapshot) {
    // A newer snapshot replaced the one being sent: start over with it.
    pr.becomeSnapshot(snap.meta.index);
  }
  const size = snap.data.byteLength;
  const offset = Math.min(pr.snapshotOffset, size);
  const end = Math.min(offset + maxChunk, size);
  if (offset === size && size > 0) return null; // all sent; waiting for the final acknowledgement
  return {
    type: MessageType.Snapshot,
    from,
    to: pr.id,
    term,
    meta: snap.meta,
    offset,
    data: snap.data.subarray(offset, end),
    done: end === size,
  };
}

/** {@link SnapshotReceiver.receive}'s answer when the snapshot is whole. */
export const SNAPSHOT_COMPLETE = -1;

interface IncomingSnapshot {
  readonly meta: SnapshotMeta;
  readonly chunks: Uint8Array[];
  size: number;
}

export class SnapshotReceiver {
  private incoming: IncomingSnapshot | null = null;
  private complete: Uint8Array | null = null;

  /** Drop whatever was received (the snapshot is no longer needed). */
  reset(): void {
    this.incoming = null;
  }

  /**
   * Take one chunk. Returns the byte count to acknowledge (what this node holds of that
   * snapshot: 0 asks the leader to start over), or {@link SNAPSHOT_COMPLETE} when this was
   * the last chunk: then {@link take} hands out the snapshot's data.
   */
  receive(m: SnapshotRequest): number {
    const { meta } = m;
    const inc = this.incoming;
    if (m.offset === 0) {
      this.incoming = { meta, chunks: [], size: 0 };
    } else if (
      !inc ||
      inc.meta.index !== meta.index ||
      inc.meta.term !== meta.term ||
      inc.size !== m.offset
    ) {
      const held = inc && inc.meta.index === meta.index && inc.meta.term === meta.term ? inc.size : 0;
      if (!held) this.incoming = null;
      return held;
    }
    const cur = this.incoming as IncomingSnapshot;
    if (m.data.byteLength > 0) {
      cur.chunks.push(m.data);
      cur.size += m.data.byteLength;
    }
    if (!m.done) return cur.size;
    this.incoming = null;
    this.complete = concat(cur.chunks, cur.size);
    return SNAPSHOT_COMPLETE;
  }

  /** The data of the snapshot completed by the last {@link receive}. */
  take(): Uint8Array {
    const data = this.complete as Uint8Array;
    this.complete = null;
    return data;
  }
}

function concat(chunks: readonly Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
