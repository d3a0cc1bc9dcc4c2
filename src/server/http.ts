/**
 * The HTTP side of a raftkv node (node:http): read-only observability, nothing else.
 *
 *   GET /status   this node's Raft status as JSON (CORS-open, so dashboards served by
 *                 other nodes can poll it)
 *   GET /metrics  Prometheus text exposition of the node's own registry
 *   GET /         the live dashboard (one self-contained HTML page)
 *
 * HEAD is accepted wherever GET is. Any other method: 405 with `Allow`; any other path:
 * 404. Errors are JSON `{ "error": ... }`. No key, value or admin operation is exposed.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NodeId } from '../raft/types.ts';
import type { RaftStorage } from '../storage/contract.ts';
import { DASHBOARD_SCRIPT, DASHBOARD_STYLE, dashboardHtml } from './dashboard.ts';
import { createNodeMetrics, type NodeEvent, type NodeMetrics } from './metrics.ts';
import type { RaftKvServer } from './server.ts';

export interface HttpServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly server: RaftKvServer;
  /** HTTP base URLs of the members (e.g. `http://10.0.0.2:8080`), for the dashboard. */
  readonly peersHttp?: () => Map<NodeId, string>;
  /** Metrics to serve; default: created here (and closed with the HTTP server). */
  readonly metrics?: NodeMetrics;
  /** The node's storage, if the caller holds it: storage stats in /status and /metrics. */
  readonly storage?: RaftStorage;
}

export interface HttpServerHandle {
  readonly port: number;
  readonly metrics: NodeMetrics;
  close(): Promise<void>;
}

export interface MemberStatus {
  readonly id: NodeId;
  /** The client (gRPC API) address, '' if unknown. */
  readonly address: string;
  /** The peer address (raft.PeerService), '' if unknown. */
  readonly peerAddress: string;
  /** The member's HTTP base URL when known (peersHttp), else null. */
  readonly http: string | null;
  readonly suffrage: 'voter' | 'learner';
  /** What this node knows of the member's role: its own role for itself, 'leader' for the leader. */
  readonly role: string;
}

export interface FollowerProgress {
  readonly id: NodeId;
  readonly match: number;
  readonly next: number;
  readonly state: string;
  readonly learner: boolean;
  readonly recentActive: boolean;
  /** Entries behind the leader's last index. */
  readonly lag: number;
}

export interface NodeStatusJson {
  readonly id: NodeId;
  readonly role: string;
  readonly term: number;
  /** '' when no leader is known. */
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly address: string;
  readonly members: readonly MemberStatus[];
  /** On the leader: one entry per other member; empty elsewhere. */
  readonly progress: readonly FollowerProgress[];
  readonly counters: Readonly<Record<string, number>>;
  readonly storage: Readonly<Record<string, unknown>> | null;
  readonly leaderChanges: number;
  readonly events: readonly NodeEvent[];
  /** Server clock, ms since the epoch. */
  readonly time: number;
  /** Uptime of the process. */
  readonly uptimeSeconds: number;
}

/** The JSON served at /status. */
export function nodeStatus(
  server: RaftKvServer,
  metrics: NodeMetrics,
  opts: { peersHttp?: () => Map<NodeId, string>; storage?: RaftStorage } = {},
): NodeStatusJson {
  metrics.tracker.poll();
  const st = server.node.status();
  const http = opts.peersHttp?.() ?? new Map<NodeId, string>();
  const roleOf = (id: NodeId, learner: boolean): string => {
    if (id === st.id) return st.role;
    if (id === st.leader) return 'leader';
    if (learner) return 'learner';
    return st.leader !== '' ? 'follower' : 'unknown';
  };
  const members: MemberStatus[] = [];
  for (const [ids, learner] of [
    [st.conf.voters, false],
    [st.conf.learners, true],
  ] as const) {
    for (const id of ids) {
      members.push({
        id,
        address: server.address(id),
        peerAddress: server.peerAddress(id),
        http: http.get(id) ?? null,
        suffrage: learner ? 'learner' : 'voter',
        role: roleOf(id, learner),
      });
    }
  }
  const progress: FollowerProgress[] =
    st.role === 'leader'
      ? st.progress
          .filter((p) => p.id !== st.id)
          .map((p) => ({
            id: p.id,
            match: p.match,
            next: p.next,
            state: p.state,
            learner: p.learner,
            recentActive: p.recentActive,
            lag: Math.max(0, st.lastIndex - p.match),
          }))
      : [];
  let storage: Record<string, unknown> | null = null;
  if (opts.storage) {
    try {
      storage = { ...opts.storage.stats() };
    } catch {
      storage = null;
    }
  }
  return {
    id: st.id,
    role: st.role,
    term: st.term,
    leader: st.leader,
    commit: st.commit,
    applied: server.node.appliedIndex,
    lastIndex: st.lastIndex,
    firstIndex: st.firstIndex,
    address: server.address(st.id),
    members,
    progress,
    counters: { ...server.node.counters },
    storage,
    leaderChanges: metrics.tracker.leaderChanges,
    events: metrics.tracker.events().slice(-20),
    time: Date.now(),
    uptimeSeconds: Math.round(process.uptime()),
  };
}

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
const DASHBOARD = Buffer.from(dashboardHtml(), 'utf8');
/** Only the page's own inline script and style run; it may fetch other nodes' /status. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(DASHBOARD_SCRIPT)}`,
  `style-src ${sha256(DASHBOARD_STYLE)}`,
  "connect-src 'self' http: https:",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const COMMON_HEADERS = { 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' } as const;

function send(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'content-type': type,
    'content-length': buf.length,
    ...headers,
  });
  res.end(req.method === 'HEAD' ? undefined : buf);
}

function sendJson(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  send(req, res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`, headers);
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServerHandle> {
  const ownMetrics = opts.metrics === undefined;
  const metrics =
    opts.metrics ?? createNodeMetrics(opts.server, opts.storage ? { storage: opts.storage } : {});
  const statusOpts = {
    ...(opts.peersHttp ? { peersHttp: opts.peersHttp } : {}),
    ...(opts.storage ? { storage: opts.storage } : {}),
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      sendJson(req, res, 400, { error: 'bad request target' });
      return;
    }
    const route = path === '/' || path === '/index.html' ? '/' : path;
    if (route !== '/' && route !== '/status' && route !== '/metrics') {
      sendJson(req, res, 404, { error: 'not found', path });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(
        req,
        res,
        405,
        { error: 'method not allowed', method: req.method ?? '' },
        { allow: 'GET, HEAD' },
      );
      return;
    }
    switch (route) {
      case '/status':
        sendJson(req, res, 200, nodeStatus(opts.server, metrics, statusOpts), {
          'access-control-allow-origin': '*',
        });
        return;
      case '/metrics':
        send(req, res, 200, metrics.contentType, await metrics.text());
        return;
      default:
        send(req, res, 200, 'text/html; charset=utf-8', DASHBOARD, {
          'content-security-policy': DASHBOARD_CSP,
          'referrer-policy': 'no-referrer',
        });
    }
  };

  const http = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendJson(req, res, 500, { error: err instanceof Error ? err.message : String(err) });
    });
  });
  http.keepAliveTimeout = 5_000;
  try {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(opts.port, opts.host, () => {
        http.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    if (ownMetrics) metrics.close();
    throw err;
  }
  const port = (http.address() as AddressInfo).port;
  let closing: Promise<void> | null = null;
  return {
    port,
    metrics,
    close() {
      closing ??= new Promise<void>((resolve) => {
        if (ownMetrics) metrics.close();
        http.close(() => resolve());
        http.closeAllConnections();
      });
      return closing;
    },
  };
}
