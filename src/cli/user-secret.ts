/**
 * The per-user, per-cluster peer secret (Erlang's ~/.erlang.cookie, one per cluster id): what
 * `raftkv serve` authenticates peers with when it has neither peer TLS nor --peer-secret-file
 * and its peer port is on loopback. Every node that one user starts on one machine for one
 * cluster reads the same file, so the seeds' and the README's command lines form a cluster as
 * written, while a local process of another user, or one that never read the file, cannot
 * speak the peer protocol (docs/security.md).
 *
 * The file is `<home>/peer-secrets/<cluster id>`, where `<home>` is `$RAFTKV_HOME`, else
 * `$XDG_CONFIG_HOME/raftkv`, else `~/.config/raftkv`.
 *
 * Invariants:
 * - A secret is only ever read from a regular file owned by this user that no other user may
 *   read or write (mode & 0o077 == 0), in a directory owned by this user that no other user may
 *   write; anything else is refused with an error naming the file and the fix (nothing is
 *   changed on disk, no permission is "repaired").
 * - Creation is atomic: the secret is written to a temporary file (O_EXCL, 0600), fsynced, and
 *   hard-linked to its name, which fails if the name exists; so a reader never sees a partial
 *   file and racing starters all end up with the one secret that was linked first.
 * - The secret never leaves this module but as the returned buffer; it is never logged.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { MIN_SECRET_BYTES } from '../transport/peer-auth.ts';

/** Why the per-user secret cannot be used (its message names the file and the fix). */
export class UserSecretError extends Error {
  override readonly name = 'UserSecretError';
  /** The file or directory at fault. */
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.path = path;
  }
}

/** The directory raftkv keeps per-user state in (see the header). */
export function raftkvHome(env: NodeJS.ProcessEnv = process.env): string {
  const own = env['RAFTKV_HOME'];
  if (own !== undefined && own !== '') return resolve(own);
  const xdg = env['XDG_CONFIG_HOME'];
  if (xdg !== undefined && xdg !== '' && isAbsolute(xdg)) return join(xdg, 'raftkv');
  return join(homedir(), '.config', 'raftkv');
}

const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/;

/** The file of `clusterId`'s secret: its name is the cluster id when that is a safe file name, else a hash of it. */
export function userSecretPath(clusterId: string, env: NodeJS.ProcessEnv = process.env): string {
  const name = SAFE_NAME.test(clusterId)
    ? clusterId
    : `id-${Buffer.from(clusterId, 'utf8').toString('hex').slice(0, 120)}`;
  return join(raftkvHome(env), 'peer-secrets', name);
}

export interface UserSecret {
  readonly file: string;
  readonly secret: Buffer;
  /** True when this call created the file. */
  readonly created: boolean;
}

const uid = (): number | null => (typeof process.getuid === 'function' ? process.getuid() : null);
/** POSIX modes and owners mean nothing on Windows (its ACLs are not checked here). */
const POSIX = process.platform !== 'win32';

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

const FIX_HINT =
  'or give every node the same --peer-secret-file, or set RAFTKV_HOME to a directory of your own';

async function checkDir(dir: string): Promise<void> {
  const st = await fs.stat(dir);
  const me = uid();
  if (!st.isDirectory()) throw new UserSecretError(dir, `${dir} is not a directory`);
  if (me !== null && st.uid !== me) {
    throw new UserSecretError(
      dir,
      `refusing the peer secret directory ${dir}: it is owned by uid ${st.uid}, not by this user (uid ${me}); ${FIX_HINT}`,
    );
  }
  if (POSIX && (st.mode & 0o022) !== 0) {
    throw new UserSecretError(
      dir,
      `refusing the peer secret directory ${dir}: other users may write to it (mode ${(st.mode & 0o777).toString(8)}); chmod 700 ${dir}, ${FIX_HINT}`,
    );
  }
}

/** Reads an existing secret file, refusing an unsafe one; null when it does not exist. */
async function readExisting(file: string): Promise<Buffer | null> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if (errno(e) === 'ENOENT') return null;
    if (errno(e) === 'ELOOP') {
      throw new UserSecretError(file, `refusing the peer secret file ${file}: it is a symbolic link`, {
        cause: e,
      });
    }
    throw new UserSecretError(file, `cannot read the peer secret file ${file}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  try {
    const st = await fh.stat();
    const me = uid();
    if (!st.isFile())
      throw new UserSecretError(file, `refusing the peer secret file ${file}: not a regular file`);
    if (me !== null && st.uid !== me) {
      throw new UserSecretError(
        file,
        `refusing the peer secret file ${file}: it is owned by uid ${st.uid}, not by this user (uid ${me}); remove it (a new one is made at the next start), ${FIX_HINT}`,
      );
    }
    if (POSIX && (st.mode & 0o077) !== 0) {
      throw new UserSecretError(
        file,
        `refusing the peer secret file ${file}: other users may read or write it (mode ${(st.mode & 0o777).toString(8)}); chmod 600 ${file} (and restart every node of the cluster if it may have leaked: remove it to have a new one made)`,
      );
    }
    const text = (await fh.readFile('utf8')).trim();
    if (Buffer.byteLength(text) < MIN_SECRET_BYTES) {
      throw new UserSecretError(
        file,
        `the peer secret file ${file} holds ${Buffer.byteLength(text)} bytes; at least ${MIN_SECRET_BYTES} are needed (remove it to have a new one made)`,
      );
    }
    return Buffer.from(text, 'utf8');
  } finally {
    await fh.close();
  }
}

/**
 * The secret of `file` (from {@link userSecretPath}), creating the file (and its directories,
 * 0700) when absent. Throws UserSecretError when it cannot be used.
 */
export async function loadOrCreateUserSecret(file: string): Promise<UserSecret> {
  const dir = resolve(file, '..');
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new UserSecretError(
      dir,
      `cannot create the peer secret directory ${dir}: ${(e as Error).message}; ${FIX_HINT}`,
      { cause: e },
    );
  }
  await checkDir(dir);
  const existing = await readExisting(file);
  if (existing !== null) return { file, secret: existing, created: false };
  const text = randomBytes(32).toString('hex');
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let linked = false;
  try {
    const fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await fh.writeFile(`${text}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fs.link(tmp, file);
      linked = true;
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw e;
      // another starter linked its secret first: that one is the secret
    }
  } catch (e) {
    if (e instanceof UserSecretError) throw e;
    throw new UserSecretError(
      file,
      `cannot create the peer secret file ${file}: ${(e as Error).message}; ${FIX_HINT}`,
      { cause: e },
    );
  } finally {
    await fs.rm(tmp, { force: true });
  }
  if (linked) {
    const d = await fs.open(dir, constants.O_RDONLY).catch(() => null);
    await d?.sync().catch(() => {});
    await d?.close();
    return { file, secret: Buffer.from(text, 'utf8'), created: true };
  }
  const winner = await readExisting(file);
  if (winner === null)
    throw new UserSecretError(file, `the peer secret file ${file} vanished while it was being created`);
  return { file, secret: winner, created: false };
}
