/**
 * What `raftkv cluster` knows about its nodes: which ones run, which are down and why (how each
 * exited and its last output lines), and whether a majority can still run. It also answers
 * GET /nodes on a small local HTTP port with that report (JSON, CORS-open), which the dashboard
 * polls (`?supervisor=`) to show a down node and its error, and redirects GET / to the dashboard
 * of a node that is up.
 *
 * Invariants: a node is `down` from its exit on, forever (nodes are not restarted); `majority()`
 * is true exactly while more than half of all the nodes are not down.
 */
import type { ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Lines kept per node and per stream, for the report of a node that exits. */
const KEEP_LINES = 12;
/** Lines shown in a down report. */
const SHOW_LINES = 6;

export type NodeRunState = 'starting' | 'up' | 'down';

export interface NodeReport {
  readonly id: string;
  readonly address: string;
  readonly http: string;
  readonly state: NodeRunState;
  /** The node's process id while it runs (null once down, or before it started). */
  readonly pid: number | null;
  /** How the process ended (`exit code 1`, `signal SIGKILL`), when down. */
  readonly exit: string | null;
  /** Its last output lines when it went down: error output if it wrote any, else its log. */
  readonly lastLines: readonly string[];
}

interface Tracked {
  readonly id: string;
  readonly address: string;
  readonly http: string;
  state: NodeRunState;
  pid: number | null;
  exit: string | null;
  readonly out: string[];
  readonly err: string[];
  lastLines: string[];
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes are stripped from reports
const ANSI = /\x1b\[[0-9;]*m/g;

function push(buf: string[], line: string): void {
  buf.push(line.replace(ANSI, ''));
  if (buf.length > KEEP_LINES) buf.shift();
}

export class Supervisor {
  private readonly nodes = new Map<string, Tracked>();
  private readonly downListeners: ((r: NodeReport) => void)[] = [];

  constructor(nodes: readonly { id: string; address: string; http: string }[]) {
    for (const n of nodes) {
      this.nodes.set(n.id, {
        ...n,
        state: 'starting',
        pid: null,
        exit: null,
        out: [],
        err: [],
        lastLines: [],
      });
    }
  }

  /** Records `line` written by node `id` on its stdout or stderr. */
  noteLine(id: string, stream: 'out' | 'err', line: string): void {
    const n = this.nodes.get(id);
    if (n) push(stream === 'err' ? n.err : n.out, line);
  }

  /** Follows a node's process: its exit makes it down. */
  watch(id: string, child: ChildProcess): void {
    const n = this.nodes.get(id);
    if (n) n.pid = child.pid ?? null;
    child.once('exit', (code, signal) => {
      // Output still buffered in the pipes arrives before 'close'; judge then.
      const done = () => this.markDown(id, signal ? `signal ${signal}` : `exit code ${code}`);
      if (child.stdout || child.stderr) child.once('close', done);
      else done();
    });
  }

  markUp(id: string): void {
    const n = this.nodes.get(id);
    if (n && n.state === 'starting') n.state = 'up';
  }

  markDown(id: string, exit: string): void {
    const n = this.nodes.get(id);
    if (!n || n.state === 'down') return;
    n.state = 'down';
    n.pid = null;
    n.exit = exit;
    n.lastLines = (n.err.length > 0 ? n.err : n.out).slice(-SHOW_LINES);
    const r = this.report(n);
    for (const f of this.downListeners) f(r);
  }

  onDown(f: (r: NodeReport) => void): void {
    this.downListeners.push(f);
  }

  get size(): number {
    return this.nodes.size;
  }

  /** Nodes not down. */
  running(): number {
    let k = 0;
    for (const n of this.nodes.values()) if (n.state !== 'down') k++;
    return k;
  }

  /** More than half of all the nodes are not down. */
  majority(): boolean {
    return this.running() > this.nodes.size / 2;
  }

  reports(): NodeReport[] {
    return [...this.nodes.values()].map((n) => this.report(n));
  }

  down(): NodeReport[] {
    return this.reports().filter((r) => r.state === 'down');
  }

  private report(n: Tracked): NodeReport {
    return {
      id: n.id,
      address: n.address,
      http: n.http,
      state: n.state,
      pid: n.pid,
      exit: n.exit,
      lastLines: n.state === 'down' ? [...n.lastLines] : [],
    };
  }
}

/** The loud, multi-line note printed when a node goes down. */
export function describeDown(r: NodeReport, sup: Supervisor, phase: string): string {
  const lines = [
    '',
    `!!! raftkv cluster: ${r.id} is DOWN (${r.exit ?? 'exited'} ${phase}); ${sup.running()} of ${sup.size} nodes running${sup.majority() ? ', a majority: the cluster serves on' : ''}.`,
    ...(r.lastLines.length > 0 ? [`!!! ${r.id}'s last lines:`, ...r.lastLines.map((l) => `!!!   ${l}`)] : []),
    '',
  ];
  return lines.join('\n');
}

/**
 * Serves GET /nodes (the supervisor's report as JSON) and GET / (a redirect to the dashboard of a node
 * that is up, told where to find this report) on host:port (0: any free port).
 */
export async function startSupervisorHttp(
  sup: Supervisor,
  host: string,
  port: number,
): Promise<{ readonly url: string; close(): Promise<void> }> {
  let self = '';
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/nodes') {
      const body = JSON.stringify({ nodes: sup.reports() });
      res
        .writeHead(200, {
          'content-type': 'application/json',
          'cache-control': 'no-store',
          'access-control-allow-origin': '*',
        })
        .end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/') {
      const up = sup.reports().find((r) => r.state !== 'down');
      if (!up) {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('raftkv cluster: every node is down\n');
        return;
      }
      const to = `http://${up.http}/?supervisor=${encodeURIComponent(`${self}/nodes`)}`;
      res.writeHead(302, { location: to }).end();
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  self = `http://${host}:${(server.address() as AddressInfo).port}`;
  return {
    url: self,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
