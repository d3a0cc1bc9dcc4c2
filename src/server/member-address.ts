/**
 * A member's two addresses, as they travel in `--peers`, in membership changes (the
 * ConfChange context) and in the state machine's member table: `CLIENT/PEER`, the client
 * (API) address and the peer address. A bare `CLIENT` (written before the peer plane had a
 * port of its own) means the peer port is the client port + {@link PEER_PORT_OFFSET}.
 *
 * Invariant: parse(format(a)) equals a; every address is host:port with port 1-65535.
 */

/** Default distance from a node's client port to its peer port. */
export const PEER_PORT_OFFSET = 1000;

export interface MemberAddress {
  readonly client: string;
  readonly peer: string;
}

const HOST_PORT = /^(\[[^\]]+\]|[^:\s/=,]+):(\d{1,5})$/;

export class MemberAddressError extends Error {
  override readonly name = 'MemberAddressError';
}

function check(s: string, what: string): string {
  const m = HOST_PORT.exec(s);
  if (m === null || Number(m[2]) > 65535) {
    throw new MemberAddressError(`${what} must be host:port, got ${JSON.stringify(s)}`);
  }
  return s;
}

/** The peer address a node whose client address is `client` listens on by default. */
export function defaultPeerAddress(client: string): string {
  const m = HOST_PORT.exec(client);
  if (m === null)
    throw new MemberAddressError(`client address must be host:port, got ${JSON.stringify(client)}`);
  const port = Number(m[2]);
  if (port === 0) return `${m[1]}:0`;
  const peer = port + PEER_PORT_OFFSET;
  if (peer > 65535) {
    throw new MemberAddressError(
      `client port ${port} + ${PEER_PORT_OFFSET} is above 65535: give the peer address explicitly`,
    );
  }
  return `${m[1]}:${peer}`;
}

/** `CLIENT` or `CLIENT/PEER`; a MemberAddressError names what is wrong. */
export function parseMemberAddress(s: string): MemberAddress {
  const slash = s.indexOf('/');
  if (slash < 0) return { client: check(s, 'address'), peer: defaultPeerAddress(s) };
  return {
    client: check(s.slice(0, slash), 'client address'),
    peer: check(s.slice(slash + 1), 'peer address'),
  };
}

export function formatMemberAddress(a: MemberAddress): string {
  return `${a.client}/${a.peer}`;
}
