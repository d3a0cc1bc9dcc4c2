/**
 * `raftkv`: the command line. `main(argv, io)` returns the exit code: 0 success,
 * 1 failure (server-side error, unreachable cluster, unusable data directory),
 * 2 usage mistake (unknown command or flag, bad or missing argument).
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { RaftKvConfigError, RaftKvError } from '../client/errors.ts';
import { type CommandSpec, parseCommand, renderHelp } from './args.ts';
import { benchSpec, runBenchCommand } from './bench.ts';
import { clusterSpec, runCluster } from './cluster.ts';
import { clientCommands, type Io, inspectSpec, makeClient, runInspect } from './commands.ts';
import { CliError, UsageError } from './errors.ts';
import { runServe, serveSpec } from './serve.ts';

const stdio: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
};

const OTHER: Record<string, CommandSpec> = {
  serve: serveSpec,
  cluster: clusterSpec,
  bench: benchSpec,
  inspect: inspectSpec,
};

function topHelp(): string {
  const specs: CommandSpec[] = [
    serveSpec,
    clusterSpec,
    ...clientCommands.map((c) => c.spec),
    benchSpec,
    inspectSpec,
  ];
  const w = Math.max(...specs.map((s) => `${s.name} ${s.args}`.length));
  return [
    'raftkv: a replicated key-value store on Raft',
    '',
    'Usage: raftkv <command> [arguments] [flags]',
    '',
    'Commands:',
    ...specs.map((s) => `  ${`${s.name} ${s.args}`.padEnd(w)}  ${s.summary}`),
    '',
    "Run 'raftkv <command> --help' for a command's flags.",
    'Exit codes: 0 ok, 1 failed (server error, cluster unreachable), 2 usage error.',
    '',
  ].join('\n');
}

export async function main(
  argv: readonly string[],
  io: Io = stdio,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.err(topHelp());
    return 2;
  }
  if (name === 'help' && rest[0] !== undefined) return main([rest[0], '--help'], io, env);
  if (name === '--help' || name === '-h' || name === 'help') {
    io.out(topHelp());
    return 0;
  }
  const clientCmd = clientCommands.find((c) => c.spec.name === name);
  const spec = clientCmd?.spec ?? (Object.hasOwn(OTHER, name) ? OTHER[name] : undefined);
  try {
    if (!spec) {
      throw new UsageError(
        name.startsWith('-')
          ? `expected a command before ${name}`
          : `unknown command ${JSON.stringify(name)}`,
      );
    }
    const p = parseCommand(spec, rest);
    if (p.values['help']) {
      io.out(renderHelp(spec));
      return 0;
    }
    if (clientCmd) {
      const client = makeClient(p, env);
      try {
        return await clientCmd.run(p, client, io);
      } finally {
        client.close();
      }
    }
    if (name === 'serve') return await runServe(p, io);
    if (name === 'cluster') return await runCluster(p, io);
    if (name === 'bench') return await runBenchCommand(p, io, env);
    return await runInspect(p, io);
  } catch (e) {
    return report(e, name, io);
  }
}

function report(e: unknown, name: string, io: Io): number {
  if (e instanceof UsageError || e instanceof RaftKvConfigError) {
    const cmd = e instanceof UsageError && e.command ? e.command : name;
    const known =
      cmd && cmd !== name
        ? cmd
        : clientCommands.some((c) => c.spec.name === cmd) || Object.hasOwn(OTHER, cmd)
          ? cmd
          : '';
    io.err(`raftkv${known ? ` ${known}` : ''}: ${e.message}\n`);
    io.err(`Run 'raftkv${known ? ` ${known}` : ''} --help' for usage.\n`);
    return 2;
  }
  if (e instanceof RaftKvError) {
    io.err(`raftkv ${name}: ${e.code}: ${e.message}\n`);
    if (e.code === 'UNAVAILABLE' && /ECONNREFUSED|No connection established/.test(e.message)) {
      io.err(
        'Is the cluster running? Start one with `npm start` (or `raftkv cluster`), or pass --endpoints.\n',
      );
    }
    if (e.code === 'PERMISSION_DENIED') {
      io.err(
        'Admin calls need the token of the nodes’ --admin-token-file (give it here with --admin-token-file or ' +
          '$RAFTKV_ADMIN_TOKEN_FILE) or, with mTLS, a client certificate named in their --admin-cert-allowed-cn.\n',
      );
    }
    if (e.code === 'DEADLINE_EXCEEDED') {
      io.err(
        'Is the cluster running and does it have a quorum? Check with `raftkv status`; --timeout sets the deadline.\n',
      );
    }
    return 1;
  }
  if (e instanceof CliError) {
    io.err(`raftkv ${name}: ${e.message}\n`);
    return 1;
  }
  io.err(`raftkv ${name}: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return 1;
}

/** Runs `main` on process.argv and exits with its code. */
export async function run(): Promise<void> {
  // grpc-js sets a TLS servername for IP endpoints, which Node flags as deprecated (DEP0123)
  // on every TLS call: noise for CLI users, and nothing they can act on.
  process.noDeprecation = true;
  const code = await main(process.argv.slice(2));
  process.exit(code);
}

const self = process.argv[1];
if (self && import.meta.url === pathToFileURL(realpathSync(self)).href) await run();
