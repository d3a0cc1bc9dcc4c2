/**
 * Reading a data directory back: segment scan, torn-tail detection and log replay. Used by
 * FileStorage.open (which then repairs a torn tail) and by `inspect` (strictly read-only).
 *
 * Recovery rules (docs/storage.md explains them to operators):
 * 1. Segments must have consecutive sequence numbers; a gap is a MissingSegmentError.
 * 2. A record that is incomplete or fails its checksum in the LAST segment, with no intact
 *    record anywhere after it, is a torn write: it and the rest of its batch are dropped.
 *    (Also in the second-to-last segment while the last holds no record: a crash while
 *    writing the Continue record that closes a full segment.) Anything else that fails to
 *    decode is a CorruptionError naming file and offset.
 *    Zero bytes from a record boundary to the end of a segment are unwritten preallocated
 *    space (FileStorage extends each new segment): the segment's records end there.
 * 3. A batch counts only when its END record is intact (a batch is all-or-nothing).
 * 4. Replay: entries must follow each other (index = previous + 1) unless a truncate or
 *    snapshot record says otherwise; the log must be covered from 1 (or from the latest
 *    snapshot) up to the hard state's commit index, and a segment closed by a Continue
 *    record must have its successor.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DurableState, Entry, HardState, Snapshot } from '../raft/types.ts';
import {
  checkSegmentHeader,
  type DecodedRecord,
  decodeSnapshotFile,
  findIntactRecord,
  readRecord,
  SEGMENT_HEADER_BYTES,
  SEGMENT_RE,
  SNAPSHOT_RE,
  segmentName,
  snapshotName,
} from './codec.ts';
import { type DataDirMeta, readMeta } from './data-dir.ts';
import {
  CorruptionError,
  ioError,
  LogOrderError,
  MissingSegmentError,
  MissingSnapshotError,
  NotDataDirError,
} from './errors.ts';
import { EMPTY_HARD_STATE } from './log-view.ts';

export interface SegmentInfo {
  readonly seq: number;
  readonly name: string;
  /** Bytes of intact, complete batches (the file is cut here when the tail is torn). */
  validEnd: number;
  readonly fileBytes: number;
  /** Highest entry index written in this segment (0: none). */
  maxEntryIndex: number;
  /**
   * Everything after `validEnd` is zero bytes: space the segment was preallocated with (sparse, never written).
   * Not a torn write; the next append goes at `validEnd`.
   */
  zeroTail: boolean;
  /** True when the whole file is an unfinished segment creation (no usable header). */
  readonly headerTorn: boolean;
}

export interface TornTail {
  readonly file: string;
  readonly offset: number;
  readonly reason: string;
}

export interface RecoveredDir {
  readonly meta: DataDirMeta | null;
  readonly segments: SegmentInfo[];
  readonly state: DurableState;
  /** Sequence of the segment holding the latest snapshot record (0: none). */
  readonly snapshotSeq: number;
  readonly tornTail: TornTail | null;
  /** Names of all `snap-*.snap` files present. */
  readonly snapshotFiles: string[];
  readonly tempFiles: string[];
}

export interface ReadOptions {
  /** Called for every record of every complete batch, in log order (for `inspect --records`). */
  readonly onRecord?: (file: string, rec: DecodedRecord) => void;
}

function allZero(buf: Uint8Array, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Replays records into the log, without assuming where the surviving log starts. */
class Replay {
  snapshot: { index: number; term: number } | null = null;
  hardState: HardState = EMPTY_HARD_STATE;
  entries: Entry[] = [];
  /** Index of entries[0] (or of the next entry when empty); undefined until the first record that fixes it. */
  first: number | undefined = undefined;

  private next(): number {
    return (this.first ?? 1) + this.entries.length;
  }
  private lastTerm(): number {
    const e = this.entries[this.entries.length - 1];
    if (e) return e.term;
    return this.snapshot && this.snapshot.index === this.next() - 1 ? this.snapshot.term : 0;
  }

  apply(file: string, rec: DecodedRecord): void {
    const r = rec.record;
    const fail = (why: string): never => {
      throw new LogOrderError(file, rec.offset, why);
    };
    switch (r.kind) {
      case 'entry': {
        const e = r.entry;
        if (this.first === undefined) this.first = e.index;
        else if (e.index !== this.next()) fail(`entry ${e.index} follows entry ${this.next() - 1}`);
        if (e.term < this.lastTerm())
          fail(`entry ${e.index} has term ${e.term} after term ${this.lastTerm()}`);
        this.entries.push(e);
        break;
      }
      case 'truncate': {
        if (this.snapshot && r.from <= this.snapshot.index) {
          fail(`truncation from ${r.from} reaches into the snapshot at ${this.snapshot.index}`);
        }
        if (this.first === undefined || r.from <= this.first) {
          this.first = r.from;
          this.entries = [];
        } else if (r.from > this.next()) {
          fail(`truncation from ${r.from} is past the end of the log (${this.next() - 1})`);
        } else {
          this.entries.length = r.from - this.first;
        }
        break;
      }
      case 'snapshot': {
        if (this.snapshot && r.index < this.snapshot.index) {
          fail(`snapshot at ${r.index} after a snapshot at ${this.snapshot.index}`);
        }
        if (!r.keep) {
          this.entries = [];
          this.first = r.index + 1;
        } else if (this.first !== undefined && this.first <= r.index + 1) {
          if (r.index >= this.next())
            fail(`snapshot at ${r.index} is past the end of the log (${this.next() - 1})`);
          if (r.index >= this.first && this.entries[r.index - this.first]!.term !== r.term) {
            fail(
              `snapshot at ${r.index} has term ${r.term} but the log has term ${this.entries[r.index - this.first]!.term}`,
            );
          }
          this.entries = this.entries.slice(r.index + 1 - this.first);
          this.first = r.index + 1;
        }
        // Otherwise the entries right after the snapshot lived in segments already removed
        // (a later snapshot covered them); the log resumes at the next entry record, and
        // the end-of-replay check makes sure a later snapshot does cover the gap.
        this.snapshot = { index: r.index, term: r.term };
        break;
      }
      case 'hardState':
        this.hardState = r.hardState;
        break;
      case 'continue':
        break;
    }
  }
}

/**
 * Scans `dir` and replays its WAL. Throws a StorageError for anything but a torn tail.
 * Never modifies the directory.
 */
export async function readDataDir(dir: string, options: ReadOptions = {}): Promise<RecoveredDir> {
  const meta = await readMeta(dir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new NotDataDirError(dir, 'no such directory', { cause: err });
    throw ioError(err, dir, 'list');
  }
  const segs: { seq: number; name: string }[] = [];
  const snapshotFiles: string[] = [];
  const tempFiles: string[] = [];
  for (const name of names) {
    const m = SEGMENT_RE.exec(name);
    if (m) segs.push({ seq: Number(m[1]), name });
    else if (SNAPSHOT_RE.test(name)) snapshotFiles.push(name);
    else if (name.endsWith('.tmp')) tempFiles.push(name);
  }
  segs.sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < segs.length; i++) {
    const prev = segs[i - 1]!.seq;
    if (segs[i]!.seq !== prev + 1) {
      throw new MissingSegmentError(
        join(dir, segmentName(prev + 1)),
        `segment sequence jumps from ${prev} to ${segs[i]!.seq}`,
      );
    }
  }

  const replay = new Replay();
  const segments: SegmentInfo[] = [];
  let tornTail: TornTail | null = null;
  let snapshotSeq = 0;
  /** Set when the segment just read ends with a Continue record. */
  let continuedTo = 0;
  // A crash while a full segment was being closed (its Continue record written) leaves a
  // torn tail in the second-to-last segment while the last one holds no record yet.
  // (A preallocated segment holds no record while everything after its header is zeros.)
  let lastIsEmpty = false;
  let lastBuf: Buffer | null = null;
  const lastName = segs[segs.length - 1]?.name;
  if (lastName !== undefined && segs.length >= 2) {
    try {
      lastBuf = await readFile(join(dir, lastName));
    } catch (err) {
      throw ioError(err, join(dir, lastName), 'read');
    }
    lastIsEmpty = lastBuf.length <= SEGMENT_HEADER_BYTES || allZero(lastBuf, SEGMENT_HEADER_BYTES);
  }
  for (let i = 0; i < segs.length; i++) {
    const { seq, name } = segs[i]!;
    const path = join(dir, name);
    const isLast = i === segs.length - 1;
    const tearable = isLast || (lastIsEmpty && i === segs.length - 2);
    let buf: Buffer;
    try {
      buf = isLast && lastBuf !== null ? lastBuf : await readFile(path);
    } catch (err) {
      throw ioError(err, path, 'read');
    }
    const headerProblem = checkSegmentHeader(buf, seq);
    if (headerProblem !== null) {
      // A segment being created when the process died: short, or never written past zeros.
      // (Never after a Continue record: the next segment is made durable before that is written.)
      if (
        isLast &&
        continuedTo === 0 &&
        (buf.length < SEGMENT_HEADER_BYTES || allZero(buf, 0)) &&
        findIntactRecord(buf, 0) < 0
      ) {
        tornTail = { file: path, offset: 0, reason: `unfinished segment: ${headerProblem}` };
        segments.push({
          seq,
          name,
          validEnd: 0,
          fileBytes: buf.length,
          maxEntryIndex: 0,
          headerTorn: true,
          zeroTail: false,
        });
        continue;
      }
      throw new CorruptionError(path, 0, headerProblem);
    }
    const info: SegmentInfo = {
      seq,
      name,
      validEnd: SEGMENT_HEADER_BYTES,
      fileBytes: buf.length,
      maxEntryIndex: 0,
      headerTorn: false,
      zeroTail: false,
    };
    let pos = SEGMENT_HEADER_BYTES;
    let pending: DecodedRecord[] = [];
    continuedTo = 0;
    while (pos < buf.length) {
      const r = readRecord(buf, pos);
      if (!r.ok) {
        if (r.kind === 'bytes' && allZero(buf, pos)) {
          // Preallocated space that was never written: the segment's records end here.
          info.zeroTail = true;
          break;
        }
        if (r.kind === 'bytes' && tearable) {
          // Look for intact records only up to shortly after the last non-zero byte: a preallocated tail of
          // zeros would otherwise let garbage lengths of many MiB each cost a checksum over that much.
          const limit = Math.min(buf.length, lastNonZero(buf) + 1 + SEARCH_SLACK);
          const next = findIntactRecord(buf, pos + 1, limit);
          // With preallocated segments a crash can leave a later page of the last write durable and an earlier
          // one still zeros. A zeroed 512-byte sector between here and the next intact record is that tear (the
          // records after it belong to the same unacknowledged write), as in etcd's WAL.
          if (next < 0 || hasZeroSector(buf, pos, next)) {
            tornTail = { file: path, offset: pos, reason: r.reason };
            break;
          }
        }
        const why =
          r.kind === 'bytes' && tearable
            ? `${r.reason}; intact records follow, so this is not a torn write`
            : r.reason;
        throw new CorruptionError(path, pos, why);
      }
      pending.push(r.rec);
      pos = r.rec.end;
      if (r.rec.last) {
        for (const rec of pending) {
          replay.apply(path, rec);
          options.onRecord?.(path, rec);
          if (rec.record.kind === 'entry' && rec.record.entry.index > info.maxEntryIndex) {
            info.maxEntryIndex = rec.record.entry.index;
          }
          if (rec.record.kind === 'snapshot') snapshotSeq = seq;
          if (rec.record.kind === 'continue') {
            if (rec.record.nextSeq !== seq + 1) {
              throw new CorruptionError(
                path,
                rec.offset,
                `continue record names segment ${rec.record.nextSeq}`,
              );
            }
            continuedTo = rec.record.nextSeq;
          } else if (continuedTo !== 0) {
            throw new CorruptionError(path, rec.offset, 'records after the end-of-segment record');
          }
        }
        pending = [];
        info.validEnd = pos;
      }
    }
    if (pending.length > 0) {
      const at = pending[0]!.offset;
      if (!tearable)
        throw new CorruptionError(path, at, 'the segment ends inside a batch (its END record is missing)');
      tornTail ??= { file: path, offset: at, reason: 'incomplete batch at the end of the log' };
    }
    if (tornTail && tornTail.file === path) tornTail = { ...tornTail, offset: info.validEnd };
    segments.push(info);
  }

  const lastSeg = segs[segs.length - 1];
  if (continuedTo !== 0) {
    throw new MissingSegmentError(
      join(dir, segmentName(continuedTo)),
      `${lastSeg?.name} ends with a record saying the log continues in segment ${continuedTo}, which is missing`,
    );
  }
  // Coverage: from 1 (or the snapshot) to the commit index.
  if (replay.first === undefined) replay.first = (replay.snapshot?.index ?? 0) + 1;
  const covered = (replay.snapshot?.index ?? 0) + 1;
  if (replay.first > covered) {
    throw new MissingSegmentError(
      join(dir, segmentName(Math.max(1, (segs[0]?.seq ?? 1) - 1))),
      `the log resumes at index ${replay.first} but nothing covers ${covered}..${replay.first - 1} ` +
        '(an earlier WAL segment is missing)',
    );
  }
  const lastIndex = replay.first + replay.entries.length - 1;
  if (replay.hardState.commit > lastIndex) {
    throw new MissingSegmentError(
      join(dir, segmentName((lastSeg?.seq ?? 0) + 1)),
      `the hard state's commit index ${replay.hardState.commit} is beyond the last log index ${lastIndex} ` +
        '(a later WAL segment is missing or was cut short)',
    );
  }

  let snapshot: Snapshot | null = null;
  if (replay.snapshot) {
    const { index, term } = replay.snapshot;
    const path = join(dir, snapshotName(index, term));
    let buf: Buffer;
    try {
      buf = await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new MissingSnapshotError(path, { cause: err });
      throw ioError(err, path, 'read');
    }
    const decoded = decodeSnapshotFile(buf);
    if (typeof decoded === 'string') throw new CorruptionError(path, 0, `snapshot file unusable: ${decoded}`);
    if (decoded.meta.index !== index || decoded.meta.term !== term) {
      throw new CorruptionError(
        path,
        0,
        `snapshot file holds index ${decoded.meta.index} term ${decoded.meta.term}`,
      );
    }
    snapshot = decoded;
  }
  return {
    meta,
    segments,
    state: { hardState: replay.hardState, snapshot, entries: replay.entries },
    snapshotSeq,
    tornTail,
    snapshotFiles,
    tempFiles,
  };
}

/** How far past the last non-zero byte an intact record may still end (it may end in zero bytes). */
const SEARCH_SLACK = 1024 * 1024;
const SECTOR = 512;

function lastNonZero(buf: Uint8Array): number {
  let i = buf.length - 1;
  while (i >= 0 && buf[i] === 0) i--;
  return i;
}

/** True when an aligned 512-byte sector inside buf[from, to) holds only zeros. */
function hasZeroSector(buf: Uint8Array, from: number, to: number): boolean {
  for (let s = Math.ceil(from / SECTOR) * SECTOR; s + SECTOR <= to; s += SECTOR) {
    let zero = true;
    for (let i = s; i < s + SECTOR; i++) {
      if (buf[i] !== 0) {
        zero = false;
        break;
      }
    }
    if (zero) return true;
  }
  return false;
}
