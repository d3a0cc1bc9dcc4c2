/**
 * An isolated RAFTKV_HOME for `raftkv serve` processes a test starts, so that their per-user
 * peer secret (src/cli/user-secret.ts) is written under a temporary directory, never into the
 * real home of whoever runs the tests. Nodes of one cluster must share one home (as one user's
 * nodes share ~/.config/raftkv); separate clusters get separate ones.
 *
 * Invariant: every directory made here is removed by `remove()` or, at the latest, when the
 * test process exits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made = new Set<string>();
process.on('exit', () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

export interface RaftkvHome {
  readonly dir: string;
  /** `base` (default process.env) with RAFTKV_HOME set to this home. */
  env(base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  remove(): void;
}

/** A new empty home, 0700 (as ~/.config/raftkv would be); `parent` defaults to the temp dir. */
export function isolatedHome(parent: string = tmpdir()): RaftkvHome {
  const dir = mkdtempSync(join(parent, 'raftkv-home-'));
  made.add(dir);
  return {
    dir,
    env: (base = process.env) => ({ ...base, RAFTKV_HOME: dir }),
    remove: () => {
      made.delete(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
