// The HTTP endpoints of a node (/status, /metrics, the dashboard) on a 3-node cluster in
// one process (in-memory peers, memory storage), and the dashboard rendered in headless
// Chromium when it is installed (skipped with a message otherwise).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Script } from 'node:vm';
import { encodeRegister, encodeRequest } from '../../src/kv/state-machine.ts';
import { MessageType } from '../../src/raft/types.ts';
import { type HttpServerHandle, type NodeStatusJson, startHttpServer } from '../../src/server/http.ts';
import { instrumentStorage } from '../../src/server/metrics.ts';
import { type RaftKvServer, startServer } from '../../src/server/server.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { waitFor } from '../support/wait.ts';

const net = new MemoryNetwork();
const ids = ['n1', 'n2', 'n3'];
const servers: RaftKvServer[] = [];
const https = new Map<string, HttpServerHandle>();
const httpUrls = new Map<string, string>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The leader, once one is known (elections may be under way on a loaded machine). */
async function waitLeader(ms = 10_000): Promise<RaftKvServer> {
  const end = Date.now() + ms;
  for (;;) {
    const l = servers.find((s) => s.node.role === 'leader');
    if (l) return l;
    if (Date.now() > end) throw new Error('no leader');
    await sleep(10);
  }
}
/** Run `fn` until it passes (a leader change between two observations makes it retry). */
async function eventually(fn: () => Promise<void>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await fn();
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
      await sleep(100);
    }
  }
}
const urlOf = (id: string): string => httpUrls.get(id) as string;

before(async () => {
  const peers = new Map(ids.map((id) => [id, `127.0.0.1:0`]));
  for (const id of ids) {
    const storage = instrumentStorage(new MemoryStorage());
    const s = await startServer({
      id,
      listen: '127.0.0.1:0',
      peers,
      dataDir: '',
      storage,
      transport: () => net.transport(id),
      tickMs: 25,
      seed: Number(id.slice(1)),
    });
    servers.push(s);
    const h = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      server: s,
      storage,
      peersHttp: () => httpUrls,
    });
    https.set(id, h);
    httpUrls.set(id, `http://127.0.0.1:${h.port}`);
  }
  const end = Date.now() + 10_000;
  while (!servers.some((s) => s.node.role === 'leader')) {
    if (Date.now() > end) throw new Error('no leader');
    await sleep(10);
  }
  for (let i = 0; i < 20; ) {
    const data = encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key: `k${i}`, value: 'v' } });
    const l = servers.find((s) => s.node.role === 'leader');
    // A leader change may drop a proposal: retry on the new leader.
    if (
      l &&
      (await l.node.propose(data).then(
        () => true,
        () => false,
      ))
    )
      i++;
    else await sleep(20);
  }
  // Let the followers learn the commit index.
  await sleep(100);
});

after(async () => {
  await Promise.all([...https.values()].map((h) => h.close()));
  await Promise.all(servers.map((s) => s.close(100)));
});

async function getStatus(id: string): Promise<{ res: Response; body: NodeStatusJson }> {
  const res = await fetch(`${urlOf(id)}/status`);
  return { res, body: (await res.json()) as NodeStatusJson };
}

test('/status reports role, term, indices, members with addresses, progress and storage', () =>
  eventually(async () => {
    const l = await waitLeader();
    const { res, body } = await getStatus(l.id);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.equal(body.id, l.id);
    assert.equal(body.role, 'leader');
    assert.equal(body.leader, l.id);
    assert.ok(body.term >= 1);
    assert.ok(body.commit >= 23, `commit ${body.commit}`); // 3 bootstrap entries + 20 writes
    assert.ok(body.applied <= body.commit && body.applied >= 23);
    assert.ok(body.lastIndex >= body.commit);
    assert.ok(body.firstIndex >= 1);
    assert.deepEqual(body.members.map((m) => m.id).sort(), ids);
    for (const m of body.members) {
      assert.equal(m.http, urlOf(m.id));
      assert.equal(m.suffrage, 'voter');
      assert.equal(m.role, m.id === l.id ? 'leader' : 'follower');
      assert.equal(typeof m.address, 'string');
    }
    assert.deepEqual(
      body.progress.map((p) => p.id).sort(),
      ids.filter((id) => id !== l.id),
    );
    for (const p of body.progress) {
      assert.ok(p.match >= 0 && p.match <= body.lastIndex);
      assert.equal(p.lag, body.lastIndex - p.match);
      assert.equal(typeof p.state, 'string');
    }
    assert.ok(body.storage && typeof body.storage['fsyncs'] === 'number');
    assert.ok((body.counters['persists'] ?? 0) > 0);
    assert.ok(body.events.some((e) => e.kind === 'leader-elected' && e.leader === l.id));

    const f = servers.find((s) => s !== l) as RaftKvServer;
    const fs = (await getStatus(f.id)).body;
    assert.equal(fs.role, 'follower');
    assert.equal(fs.leader, l.id);
    assert.deepEqual(fs.progress, []);
    assert.ok(fs.commit >= 23);
  }));

/** A minimal parser of the Prometheus text format (0.0.4): samples and their TYPE. */
function parsePrometheus(text: string): { types: Map<string, string>; samples: Map<string, number[]> } {
  const types = new Map<string, string>();
  const samples = new Map<string, number[]>();
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$/;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      assert.ok(name && type && /^(counter|gauge|histogram|summary|untyped)$/.test(type), line);
      types.set(name, type);
      continue;
    }
    const m = sample.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const v = Number(m[3] === '+Inf' ? Number.POSITIVE_INFINITY : m[3]);
    const name = m[1] as string;
    // NaN is valid exposition text (Prometheus parses it case-insensitively, and prom-client
    // writes it "Nan"); the event-loop lag gauges read NaN until the lag histogram holds a
    // sample (a scrape within the first few ms). Nothing else may.
    assert.ok(
      !Number.isNaN(v) || (/^nan$/i.test(m[3] ?? '') && name.startsWith('nodejs_eventloop_lag_')),
      line,
    );
    samples.set(name, [...(samples.get(name) ?? []), v]);
  }
  return { types, samples };
}

test('/metrics is Prometheus text with the raft, storage, API and process metrics', async () => {
  const h1 = https.get('n1') as HttpServerHandle;
  h1.metrics.proposals.inc(3);
  h1.metrics.reads.inc();
  const n1 = parsePrometheus(await (await fetch(`${urlOf('n1')}/metrics`)).text());
  assert.deepEqual(n1.samples.get('raftkv_proposals_total'), [3]);
  assert.deepEqual(n1.samples.get('raftkv_reads_total'), [1]);
  for (const id of ['n2', 'n3']) {
    const other = parsePrometheus(await (await fetch(`${urlOf(id)}/metrics`)).text());
    assert.deepEqual(other.samples.get('raftkv_proposals_total'), [0], 'each node has its own registry');
  }
  await eventually(async () => {
    const l = await waitLeader();
    const res = await fetch(`${urlOf(l.id)}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const { types, samples } = parsePrometheus(text);
    const expected: Record<string, string> = {
      raftkv_term: 'gauge',
      raftkv_role: 'gauge',
      raftkv_is_leader: 'gauge',
      raftkv_commit_index: 'gauge',
      raftkv_applied_index: 'gauge',
      raftkv_last_index: 'gauge',
      raftkv_leader_changes_total: 'counter',
      raftkv_proposals_total: 'counter',
      raftkv_reads_total: 'counter',
      raftkv_persists_total: 'counter',
      raftkv_persist_duration_seconds: 'histogram',
      raftkv_messages_sent_total: 'counter',
      raftkv_snapshots_total: 'counter',
      raftkv_follower_match_index: 'gauge',
      raftkv_follower_lag_entries: 'gauge',
      raftkv_storage_fsyncs_total: 'counter',
      process_cpu_user_seconds_total: 'counter',
      nodejs_eventloop_lag_seconds: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) assert.equal(types.get(name), type, name);
    assert.deepEqual(samples.get('raftkv_is_leader'), [1]);
    assert.ok((samples.get('raftkv_commit_index')?.[0] ?? 0) >= 23);
    assert.ok((samples.get('raftkv_persist_duration_seconds_count')?.[0] ?? 0) > 0);
    assert.ok((samples.get('raftkv_persists_total')?.[0] ?? 0) > 0);
    assert.equal(samples.get('raftkv_follower_match_index')?.length, 2);
    assert.match(text, /raftkv_role\{role="leader",node="n\d"\} 1/);
    assert.match(text, new RegExp(`raftkv_follower_lag_entries\\{follower="n\\d",node="${l.id}"\\} \\d+`));

    // A follower exposes no per-follower series.
    const f = servers.find((s) => s !== l) as RaftKvServer;
    const ft = parsePrometheus(await (await fetch(`${urlOf(f.id)}/metrics`)).text());
    assert.deepEqual(ft.samples.get('raftkv_is_leader'), [0]);
    assert.equal(ft.samples.get('raftkv_follower_match_index'), undefined);
  });
});

test('/metrics counts what the trust boundary refused: messages from non-members, invalid entries, sessions', async () => {
  const l = await waitLeader();
  const text = async () => parsePrometheus(await (await fetch(`${urlOf(l.id)}/metrics`)).text());
  const before = await text();
  for (const [name, type] of Object.entries({
    raftkv_peer_messages_dropped_total: 'counter',
    raftkv_forwarded_proposals_refused_total: 'counter',
    raftkv_malformed_conf_changes_total: 'counter',
    raftkv_invalid_entries_total: 'counter',
    raftkv_sessions_expired_total: 'counter',
    raftkv_sessions_evicted_total: 'counter',
    raftkv_sessions: 'gauge',
  })) {
    assert.equal(before.types.get(name), type, name);
  }
  // A stranger's heartbeat, a library user's garbage proposal, a registered session.
  net.route('mallory', [
    { type: MessageType.Heartbeat, from: 'mallory', to: l.id, term: 1e6, commit: 0, readSeq: 0 },
  ]);
  const r = await l.node.propose(new Uint8Array([9, 9, 9]), Date.now() + 5_000);
  assert.equal(r.result?.kind, 'invalid');
  await l.node.propose(encodeRegister(), Date.now() + 5_000);
  // A scrape reuses the node's status for 50 ms (and back-to-back scrapes see no event-loop
  // samples): scrape every 100 ms until a fresh one shows the events.
  let after = before;
  const grew = (name: string) => (after.samples.get(name)?.[0] ?? 0) - (before.samples.get(name)?.[0] ?? 0);
  await waitFor(
    'a scrape after the events',
    async () => {
      await new Promise((r) => setTimeout(r, 100));
      after = await text();
      return grew('raftkv_peer_messages_dropped_total') >= 1 && grew('raftkv_sessions') >= 1;
    },
    { everyMs: 1 },
  );
  assert.equal(grew('raftkv_peer_messages_dropped_total'), 1);
  assert.equal(grew('raftkv_invalid_entries_total'), 1);
  assert.equal(grew('raftkv_sessions'), 1);
});

test('unknown paths are 404 JSON, other methods 405 with Allow, HEAD works', async () => {
  const base = urlOf('n1');
  const nf = await fetch(`${base}/nope`);
  assert.equal(nf.status, 404);
  assert.match(nf.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(((await nf.json()) as { error: string }).error, 'not found');
  for (const path of ['/status', '/metrics', '/']) {
    const r = await fetch(`${base}${path}`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 405, path);
    assert.equal(r.headers.get('allow'), 'GET, HEAD');
    assert.ok(((await r.json()) as { error: string }).error);
  }
  const head = await fetch(`${base}/status`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '');
  const q = await fetch(`${base}/status?x=1`);
  assert.equal(q.status, 200);
  await q.body?.cancel();
});

function inlineBlocks(html: string, tag: 'script' | 'style'): string[] {
  return [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => m[1] as string);
}

test('the dashboard is one self-contained HTML page referencing only same-origin URLs', async () => {
  const res = await fetch(`${urlOf('n1')}/`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
  const html = await res.text();
  assert.match(html, /^<!doctype html>/i);
  assert.match(html, /<html lang="en">/);
  // No external resources: every src/href/action is relative (same origin) or a data: URL.
  const refs = [...html.matchAll(/\b(?:src|href|action|poster|srcset)\s*=\s*["']?([^"'\s>]*)/gi)].map(
    (m) => m[1] as string,
  );
  assert.ok(refs.length > 0);
  for (const ref of refs) {
    assert.ok(
      !/^([a-z][a-z0-9+.-]*:)?\/\//i.test(ref) || ref.startsWith('data:'),
      `external reference ${ref}`,
    );
    assert.ok(!/^(javascript|http|https):/i.test(ref), `external reference ${ref}`);
  }
  assert.doesNotMatch(html, /<script[^>]+src=/i);
  assert.doesNotMatch(html, /<link[^>]+stylesheet/i);
  // The inline script parses, and the CSP admits exactly the inline script and style.
  const scripts = inlineBlocks(html, 'script');
  const styles = inlineBlocks(html, 'style');
  assert.equal(scripts.length, 1);
  assert.equal(styles.length, 1);
  assert.doesNotMatch(styles[0] as string, /@import|url\(/i);
  new Script(scripts[0] as string);
  const csp = res.headers.get('content-security-policy') ?? '';
  const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
  assert.ok(csp.includes(`script-src ${hash(scripts[0] as string)}`), csp);
  assert.ok(csp.includes(`style-src ${hash(styles[0] as string)}`), csp);
  assert.ok(csp.includes("default-src 'none'"));
  // The script fetches only the relative 'status' URL or the members' status URLs.
  assert.doesNotMatch(scripts[0] as string, /fetch\(\s*['"]https?:/);
});

// ------------------------------------------------------------------ headless Chromium

/** CHROMIUM=/path picks the browser; CHROMIUM=none skips the check. */
function findChromium(): string | null {
  if (process.env['CHROMIUM'] === 'none') return null;
  const candidates = [
    process.env['CHROMIUM'],
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
    '/usr/bin/google-chrome',
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  return null;
}

function chromium(bin: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'raftkv-chromium-'));
  const base = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--hide-scrollbars',
    `--user-data-dir=${dir}`,
  ];
  // Asynchronous on purpose: the HTTP servers under test run in this process.
  return new Promise((resolve, reject) => {
    execFile(bin, [...base, ...args], { timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      rmSync(dir, { recursive: true, force: true });
      if (err) reject(Object.assign(err, { stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

test('the dashboard renders in headless Chromium without script errors (screenshot)', async (t) => {
  const bin = findChromium();
  if (!bin) {
    t.skip('chromium is not installed (apt-get install chromium): dashboard rendering not checked');
    return;
  }
  // Keep writes flowing (to whichever node leads) so the sparklines have something to show.
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      const cmd = { kind: 'put', key: `w${i % 10}`, value: String(i) } as const;
      const cur = servers.find((s) => s.node.role === 'leader');
      await Promise.all(
        Array.from({ length: 5 }, () =>
          cur?.node
            .propose(encodeRequest({ client: 0, seq: 0, cmd }), AbortSignal.timeout(1_000))
            .catch(() => {}),
        ),
      );
      await sleep(10);
    }
  })();
  const l = await waitLeader();
  try {
    const url = `${urlOf(l.id)}/`;
    const dom = await chromium(bin, ['--virtual-time-budget=5000', '--dump-dom', url]);
    const html = dom.stdout;
    assert.match(html, /<body[^>]*data-ready="1"/, 'the dashboard rendered data');
    assert.doesNotMatch(html, /data-errors=/, 'no script errors');
    assert.match(html, /data-nodes="3"/);
    for (const id of ids) assert.match(html, new RegExp(`<tr[^>]*data-node="${id}"`));
    assert.match(html, new RegExp(`<tr class="leader" data-node="${l.id}"`));
    assert.match(html, /is leader \(term \d+\)/);

    // ?nodes= picks the status URLs; an unreachable one is listed as down.
    const list = [...ids.map((id) => urlOf(id).replace('http://', '')), '127.0.0.1:1'].join(',');
    const picked = (await chromium(bin, ['--virtual-time-budget=3000', '--dump-dom', `${url}?nodes=${list}`]))
      .stdout;
    assert.match(picked, /data-nodes="4"/);
    assert.doesNotMatch(picked, /data-errors=/, 'no script errors');
    assert.match(picked, /<tr class="down" data-node="127\.0\.0\.1:1"/);
    assert.match(picked, /class="pill warn">degraded</);
    const out = process.env['DASHBOARD_SCREENSHOT'] ?? join(tmpdir(), 'raftkv-dashboard.png');
    await chromium(bin, ['--virtual-time-budget=8000', `--screenshot=${out}`, '--window-size=1280,800', url]);
    const png = readFileSync(out);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    t.diagnostic(`dashboard screenshot: ${out}`);
  } finally {
    stop = true;
    await writer;
  }
});

test('a leader change is counted in /metrics and reported in /status events', async () => {
  const l = await waitLeader();
  const target = servers.find((s) => s !== l) as RaftKvServer;
  const before = (await getStatus(target.id)).body.leaderChanges;
  await eventually(async () => {
    if (target.node.role !== 'leader') {
      try {
        (await waitLeader()).node.transferLeadership(target.id);
      } catch {}
    }
    await sleep(200);
    assert.equal(target.node.role, 'leader');
  });
  await eventually(async () => {
    const { body } = await getStatus(target.id);
    assert.ok(body.leaderChanges > before, `${body.leaderChanges} > ${before}`);
    assert.ok(body.events.some((e) => e.kind === 'leader-elected' && e.leader === target.id));
    assert.ok(body.events.some((e) => e.kind === 'role-changed' && e.role === 'leader'));
    const m = parsePrometheus(await (await fetch(`${urlOf(target.id)}/metrics`)).text());
    assert.ok((m.samples.get('raftkv_leader_changes_total')?.[0] ?? 0) >= body.leaderChanges);
    assert.deepEqual(m.samples.get('raftkv_is_leader'), [1]);
  });
});
