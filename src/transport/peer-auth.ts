/**
 * How peers prove who they are on the peer port (docs/security.md), once per stream:
 *
 * - `tls`: both ends present certificates signed by the peer CA (checked by TLS itself); a
 *   certificate is a peer's only if its extended key usage names both serverAuth and
 *   clientAuth (an ordinary client certificate has clientAuth only), it names the node id the
 *   other end claims (CN or a DNS subjectAltName), and, when an allow-list is given, one of
 *   its names is on it.
 * - `secret`: a cluster secret shared by every member, proven by challenge-response: each side
 *   sends a fresh 32-byte nonce and answers with HMAC-SHA256(secret, label, cluster id, client
 *   id, server id, client nonce, server nonce). The labels differ per direction, so a proof
 *   is never valid in the other direction; the nonces make every proof single-use; the secret
 *   never crosses the wire.
 * - `none`: no authentication (--insecure-peers).
 *
 * Invariants: every check is a pure function of its inputs (no I/O beyond `randomBytes`);
 * proofs are compared in constant time; a refusal is a string saying what was wrong.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type PeerAuth =
  | { readonly kind: 'none' }
  | {
      readonly kind: 'secret';
      readonly secret: Buffer;
      /** Where the secret comes from, for the log lines of a failed proof (default: --peer-secret-file). */
      readonly source?: SecretSource;
    }
  | {
      readonly kind: 'tls';
      /** Names (CN or DNS SAN) of which a peer certificate must carry one; null: any. */
      readonly allowedNames: readonly string[] | null;
    };

/**
 * Where a node's cluster secret comes from. Only `kind` travels in the hello (so that a failed
 * proof can be explained at both ends); `file` stays in this node's logs.
 */
export interface SecretSource {
  /** `peer-secret-file`: the --peer-secret-file flag; `user-file`: the per-user file (src/cli/user-secret.ts). */
  readonly kind: SecretSourceKind;
  readonly file: string;
}
export type SecretSourceKind = 'peer-secret-file' | 'user-file';

/** How a node's secret source reads in a log line (`who`: "this node", "node n2"). */
export function describeSecretSource(who: string, kind: string | undefined, file?: string): string {
  const where = file === undefined ? '' : ` ${file}`;
  if (kind === 'peer-secret-file') return `${who}'s secret is its --peer-secret-file${where}`;
  if (kind === 'user-file') {
    const file =
      where === ''
        ? ' of the user running it ($RAFTKV_HOME/peer-secrets/<cluster id>, RAFTKV_HOME defaulting to ~/.config/raftkv)'
        : where;
    return `${who}'s secret is the per-user secret file${file}, used without TLS and --peer-secret-file on loopback`;
  }
  return `${who} did not say where its secret comes from`;
}

/** Bytes of a nonce. */
export const NONCE_BYTES = 32;
/** Shortest accepted secret, in bytes. */
export const MIN_SECRET_BYTES = 16;

const SERVER_LABEL = 'raftkv-peer-server-v1';
const CLIENT_LABEL = 'raftkv-peer-client-v1';
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

export interface ProofInput {
  readonly clusterId: string;
  /** The node that opened the stream. */
  readonly client: string;
  /** The node that accepted it. */
  readonly server: string;
  readonly clientNonce: Uint8Array;
  readonly serverNonce: Uint8Array;
}

function proof(secret: Buffer, label: string, p: ProofInput): Buffer {
  const h = createHmac('sha256', secret);
  // Every variable-length field is length-prefixed, so no two inputs share an encoding.
  for (const s of [label, p.clusterId, p.client, p.server]) {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(b.length, 0);
    h.update(len);
    h.update(b);
  }
  h.update(p.clientNonce);
  h.update(p.serverNonce);
  return h.digest();
}

/** The server's answer to the client's challenge. */
export function serverProof(secret: Buffer, p: ProofInput): Buffer {
  return proof(secret, SERVER_LABEL, p);
}

/** The client's answer to the server's challenge. */
export function clientProof(secret: Buffer, p: ProofInput): Buffer {
  return proof(secret, CLIENT_LABEL, p);
}

export function proofMatches(expected: Buffer, got: Uint8Array | undefined | null): boolean {
  return (
    got !== undefined && got !== null && got.length === expected.length && timingSafeEqual(expected, got)
  );
}

/** The parts of node's PeerCertificate this module reads. */
export interface CertificateLike {
  readonly subject?: { readonly CN?: string | readonly string[] } | null;
  readonly subjectaltname?: string;
  readonly ext_key_usage?: readonly string[];
}

/** The names a certificate gives its holder: its CN and its DNS subjectAltNames. */
export function certificateNames(cert: CertificateLike): string[] {
  const out: string[] = [];
  const cn = cert.subject?.CN;
  if (typeof cn === 'string') out.push(cn);
  else if (Array.isArray(cn)) out.push(...(cn as readonly string[]));
  for (const part of (cert.subjectaltname ?? '').split(',')) {
    const t = part.trim();
    if (t.startsWith('DNS:')) out.push(t.slice(4));
  }
  return out;
}

/**
 * Why `cert` may not speak for node `id` (null when it may). `id` null: any node id the
 * certificate names (a discovery probe; the caller then checks the id the peer claims).
 */
export function checkPeerCertificate(
  cert: CertificateLike | null | undefined,
  id: string | null,
  allowedNames: readonly string[] | null,
): string | null {
  if (cert === null || cert === undefined || cert.subject === undefined) {
    return 'no peer certificate was presented';
  }
  const eku = cert.ext_key_usage ?? [];
  if (!eku.includes(OID_SERVER_AUTH) || !eku.includes(OID_CLIENT_AUTH)) {
    return 'the certificate is not a peer certificate: its extended key usage must include both serverAuth and clientAuth';
  }
  const names = certificateNames(cert);
  if (allowedNames !== null && !names.some((n) => allowedNames.includes(n))) {
    return `the certificate names ${JSON.stringify(names)}, none of which is allowed (--peer-cert-allowed-cn)`;
  }
  if (id !== null && !names.includes(id)) {
    return `the certificate names ${JSON.stringify(names)}, not the node id "${id}" it claims`;
  }
  return null;
}

const LOOPBACK_V4 = /^127(\.\d{1,3}){3}$/;

/** True when `host` (as in host:port) can be reached only from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || LOOPBACK_V4.test(h);
}
