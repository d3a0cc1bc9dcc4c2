/**
 * `raftkv inspect <data-dir>`: prints a node's durable state as JSON lines, strictly
 * read-only (a torn tail is reported, not repaired). One object per line, told apart by
 * `kind`, so that `jq` can query it:
 *
 *   {"kind":"meta","format":1,"nodeId":"n1","clusterId":"c1"}
 *   {"kind":"segment","file":"wal-0000000000000001.log","seq":1,"bytes":4096,"validBytes":4096,"maxEntryIndex":12}
 *   {"kind":"tornTail","file":"...","offset":4000,"reason":"..."}          (only when present)
 *   {"kind":"hardState","term":3,"vote":"n2","commit":10}
 *   {"kind":"snapshot","index":5,"term":2,"conf":{"voters":[..],"learners":[..]},"bytes":123}
 *   {"kind":"entry","index":6,"term":2,"type":"normal","data":"<base64>"}
 *
 * With `records: true` it prints the raw WAL records instead of the replayed log
 * (`{"kind":"record","file":...,"offset":...,"batchEnd":true|false,"type":"entry"|"hardState"|"snapshot"|"truncate"|"continue",...}`).
 */
import { basename } from 'node:path';
import { type Entry, EntryType } from '../raft/types.ts';
import type { DecodedRecord } from './codec.ts';
import { readDataDir } from './recovery.ts';

export interface InspectOptions {
  /** Print every WAL record (file, offset, batch end) rather than the replayed log. */
  readonly records?: boolean;
}

function entryJson(e: Entry): Record<string, unknown> {
  return {
    index: e.index,
    term: e.term,
    type: e.type === EntryType.ConfChange ? 'conf-change' : 'normal',
    data: Buffer.from(e.data.buffer, e.data.byteOffset, e.data.length).toString('base64'),
  };
}

function recordJson(file: string, rec: DecodedRecord): Record<string, unknown> {
  const base = { kind: 'record', file: basename(file), offset: rec.offset, batchEnd: rec.last };
  const r = rec.record;
  switch (r.kind) {
    case 'entry': {
      const e = entryJson(r.entry);
      return { ...base, ...e, entryType: e['type'], type: 'entry' };
    }
    case 'hardState':
      return { ...base, type: 'hardState', ...r.hardState };
    case 'snapshot':
      return { ...base, type: 'snapshot', index: r.index, term: r.term, keep: r.keep };
    case 'truncate':
      return { ...base, type: 'truncate', from: r.from };
    case 'continue':
      return { ...base, type: 'continue', nextSeq: r.nextSeq };
  }
}

/**
 * Reads the data directory `dir` and calls `write` with one JSON text per line (no newline).
 * Throws the same typed errors as FileStorage.open for a directory that cannot be trusted.
 */
export async function inspect(
  dir: string,
  write: (line: string) => void,
  options: InspectOptions = {},
): Promise<void> {
  const raw: string[] = [];
  const rec = await readDataDir(
    dir,
    options.records ? { onRecord: (file, r) => raw.push(JSON.stringify(recordJson(file, r))) } : {},
  );
  const out = (o: Record<string, unknown>): void => write(JSON.stringify(o));
  if (rec.meta) out({ kind: 'meta', ...rec.meta });
  for (const s of rec.segments) {
    out({
      kind: 'segment',
      file: s.name,
      seq: s.seq,
      bytes: s.fileBytes,
      validBytes: s.validEnd,
      // bytes past validBytes that are preallocated, never-written zeros (not a torn tail)
      unwrittenBytes: s.zeroTail ? s.fileBytes - s.validEnd : 0,
      maxEntryIndex: s.maxEntryIndex,
    });
  }
  if (rec.tornTail) out({ kind: 'tornTail', ...rec.tornTail, file: basename(rec.tornTail.file) });
  out({ kind: 'hardState', ...rec.state.hardState });
  const snap = rec.state.snapshot;
  if (snap) {
    out({
      kind: 'snapshot',
      index: snap.meta.index,
      term: snap.meta.term,
      conf: snap.meta.conf,
      bytes: snap.data.length,
    });
  }
  if (options.records) {
    for (const line of raw) write(line);
    return;
  }
  for (const e of rec.state.entries) out({ kind: 'entry', ...entryJson(e) });
}
