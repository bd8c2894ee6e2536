/**
 * What the proxy benchmarks share: the pgbench database on an embedded PostgreSQL, PgBouncer and
 * tandem proxy started as child processes, the pgbench runner, rounds in rotating order with their
 * medians, and what /proc says about a process (RSS, CPU time).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort } from '../../src/dev/ports.js';
import { startBenchServer, type BenchServer } from '../support.js';

export const DATABASE = 'bench';

export interface BenchArgs<K extends string> {
  /** pgbench -T of every run, seconds. */
  duration: number;
  rounds: number;
  scale: number;
  clients: number[];
  /** Idle clients of the memory measurement; 0 skips it. */
  idle: number;
  /** The script's own options, as given. */
  own: Record<K, string>;
}

/** The command line both proxy benchmarks share (`--duration`, `--rounds`, `--scale`, `--clients`, `--idle`), with `own` beside it. */
export function parseBenchArgs<K extends string>(defaults: { clients: string; idle: string }, own: Record<K, string>): BenchArgs<K> {
  const withDefaults: Record<string, string> = { duration: '10', rounds: '3', scale: '10', ...defaults, ...own };
  const { values } = parseArgs({
    options: Object.fromEntries(Object.entries(withDefaults).map(([name, value]) => [name, { type: 'string', default: value }] as const)),
  });
  const given = values as Record<string, string>;
  return {
    duration: Number(given.duration),
    rounds: Number(given.rounds),
    scale: Number(given.scale),
    clients: given.clients!.split(',').map(Number),
    idle: Number(given.idle),
    own: Object.fromEntries(Object.keys(own).map((name) => [name, given[name]!])) as Record<K, string>,
  };
}

export interface PgbenchDatabase {
  server: BenchServer;
  /** The `bench` database's URL, for the proxies' --postgres-url. */
  url: string;
  major: number;
}

/** An embedded PostgreSQL with a `bench` database initialised by `pgbench -i` at `scale`. */
export async function startPgbenchDatabase(scale: number, maxConnections: number): Promise<PgbenchDatabase> {
  const server = await startBenchServer({ max_connections: String(maxConnections) });
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${DATABASE}`);
  const { rows } = await admin.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  await admin.end();
  const url = new URL(server.url);
  url.pathname = `/${DATABASE}`;
  const init = spawnSync('pgbench', ['-h', '127.0.0.1', '-p', String(server.port), '-U', 'postgres', '-i', '-q', '-s', String(scale), DATABASE], { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`pgbench -i failed:\n${init.stderr}\n${init.stdout}`);
  return { server, url: url.toString(), major: Math.floor(Number(rows[0]!.v) / 10_000) };
}

export interface PgbenchRun {
  clients: number;
  /** pgbench threads; the caller decides (see `-M prepared` in pooling.ts for why it matters). */
  threads: number;
  seconds: number;
  script?: 'select-only' | 'tpcb-like';
  protocol?: 'simple' | 'prepared';
  /** `-C`: a new connection for every transaction. */
  connectPerTransaction?: boolean;
}

export interface Result {
  tps: number;
  latencyMs: number;
  transactions: number;
}

/**
 * Asynchronous on purpose: while pgbench runs, this process must go on reading the embedded
 * server's stderr. A blocked event loop lets that pipe fill up, and then every backend that logs
 * (the proxies' failing heartbeats in this database without a state schema, for instance) hangs.
 */
function runAsync(command: string, argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, argv, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${argv.join(' ')} failed:\n${stderr}\n${stdout}`));
      else resolve(stdout + stderr);
    });
  });
}

export async function pgbench(port: number, run: PgbenchRun): Promise<Result> {
  const output = await runAsync('pgbench', [
    '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres',
    '-b', run.script ?? 'select-only', '-M', run.protocol ?? 'simple', ...(run.connectPerTransaction ? ['-C'] : []),
    '-c', String(run.clients), '-j', String(run.threads), '-T', String(run.seconds), DATABASE,
  ]);
  // With -C, pgbench counts the reconnections in; without, it leaves the initial connections out.
  const tps = /tps = ([\d.]+) \((?:without initial connection time|including reconnection times)\)/.exec(output);
  const latency = /latency average = ([\d.]+) ms/.exec(output);
  const transactions = /number of transactions actually processed: (\d+)/.exec(output);
  if (transactions?.[1] === '0') {
    // pgbench's -T clock starts before its clients connect: 200 new backends on a busy 2-core
    // machine can take longer than a short run.
    throw new Error(`pgbench ran no transaction in ${run.seconds} s (give --duration more):\n${output}`);
  }
  if (!tps || !latency || !transactions) throw new Error(`cannot read pgbench output:\n${output}`);
  return { tps: Number(tps[1]), latencyMs: Number(latency[1]), transactions: Number(transactions[1]) };
}

export function median<T extends { tps: number }>(results: T[]): T {
  const sorted = [...results].sort((a, b) => a.tps - b.tps);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Runs every target once per round and returns each target's median round. The order of the
 * targets rotates between rounds so that drift on a shared 2-core machine favours no one.
 */
export async function medianOfRotatingRounds<T extends { tps: number }>(
  names: readonly string[],
  rounds: number,
  runOne: (name: string, round: number) => Promise<T>,
): Promise<Record<string, T>> {
  const runs: Record<string, T[]> = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + round) % names.length]!;
      runs[name]!.push(await runOne(name, round));
    }
  }
  return Object.fromEntries(Object.entries(runs).map(([name, list]) => [name, median(list)]));
}

function waitForPort(port: number, child: ChildProcess, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 15_000;
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`${name} exited with ${child.exitCode}`));
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve();
      });
      socket.on('error', () => {
        if (Date.now() > deadline) reject(new Error(`${name} did not listen on ${port}`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

export interface Target {
  port: number;
  /** The process that does the proxying, for /proc. */
  pid: number;
}

export interface PgBouncerSettings {
  poolMode: 'session' | 'transaction';
  poolSize: number;
  maxClientConn: number;
}

/**
 * The PgBouncer the benchmarks compare with: `$PGBOUNCER` (a path, e.g. one built from source) or
 * the `pgbouncer` on the PATH (Debian 12 ships 1.18).
 */
export const PGBOUNCER_BINARY = process.env.PGBOUNCER || 'pgbouncer';

/** Its version line (`PgBouncer 1.25.2`), and whether it prepares in transaction mode (1.21 and later). */
export function pgbouncerVersion(): { line: string; preparedStatements: boolean } {
  return (knownVersion ??= readPgbouncerVersion());
}

let knownVersion: { line: string; preparedStatements: boolean } | undefined;

function readPgbouncerVersion(): { line: string; preparedStatements: boolean } {
  const run = spawnSync(PGBOUNCER_BINARY, ['--version'], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${PGBOUNCER_BINARY} --version failed: ${run.error?.message ?? run.stderr}`);
  const line = run.stdout.split('\n')[0]!.trim();
  const [major, minor] = (/PgBouncer (\d+)\.(\d+)/.exec(line) ?? []).slice(1).map(Number);
  return { line, preparedStatements: major! > 1 || (major === 1 && minor! >= 21) };
}

/** tandem's default --max-prepared-statements, given to a PgBouncer that has the setting. */
const MAX_PREPARED_STATEMENTS = 200;

export async function startPgBouncer(pgPort: number, settings: PgBouncerSettings): Promise<Target & { stop(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-pgbouncer-'));
  chmodSync(dir, 0o777);
  const port = await freePort();
  writeFileSync(join(dir, 'userlist.txt'), '"postgres" ""\n');
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `${DATABASE} = host=127.0.0.1 port=${pgPort} dbname=${DATABASE}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      `pool_mode = ${settings.poolMode}`,
      `max_client_conn = ${settings.maxClientConn}`,
      `default_pool_size = ${settings.poolSize}`,
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      ...(pgbouncerVersion().preparedStatements ? [`max_prepared_statements = ${MAX_PREPARED_STATEMENTS}`] : []),
      '',
    ].join('\n'),
  );
  for (const file of ['userlist.txt', 'pgbouncer.ini']) chmodSync(join(dir, file), 0o644);
  // PgBouncer refuses to run as root.
  const child = spawn('runuser', ['-u', 'postgres', '--', PGBOUNCER_BINARY, join(dir, 'pgbouncer.ini')], { stdio: 'ignore' });
  await waitForPort(port, child, 'pgbouncer');
  // runuser does not pass signals on, and /proc should show PgBouncer rather than runuser: its own
  // pid file names the process.
  const pid = Number(readFileSync(join(dir, 'pgbouncer.pid'), 'utf8').trim());
  return {
    port,
    pid,
    stop() {
      if (pid > 0) process.kill(pid, 'SIGINT');
      child.kill('SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `node bin/tandem.js proxy` (from dist/: `npm run build` first) with `proxyArgs` after the defaults. */
/**
 * The proxy runs as users run it, from `dist/` (bin/tandem.js): a `dist/` older than `src/` (built by
 * `npm ci` before a merge, say) would measure other code than the checkout's, and silently.
 */
function refuseStaleBuild(): void {
  const built = (() => {
    try {
      return statSync('dist/cli/entry.js').mtimeMs;
    } catch {
      return 0;
    }
  })();
  const newest = readdirSync('src', { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .reduce((latest, entry) => Math.max(latest, statSync(join(entry.parentPath, entry.name)).mtimeMs), 0);
  if (newest > built) throw new Error('dist/ is older than src/ (or missing): run `npm run build` first, or the bench measures other code than this checkout');
}

export async function startTandem(pgUrl: string, proxyArgs: string[]): Promise<Target & { stop(): Promise<void> }> {
  refuseStaleBuild();
  const port = await freePort();
  const argv = ['bin/tandem.js', '--postgres-url', pgUrl, '--log-level', 'warn', 'proxy', '--listen', `127.0.0.1:${port}`, '--shutdown-grace', '0s', ...proxyArgs];
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitForPort(port, child, 'tandem proxy');
  return {
    port,
    pid: child.pid!,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]);
}

const CLOCK_TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

export interface CpuTimes {
  user: number;
  system: number;
}

/** User and system CPU seconds of a process, all its threads included. */
export function cpuSeconds(pid: number): CpuTimes {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name in parentheses may hold spaces; the fields after it are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return { user: Number(fields[11]) / CLOCK_TICKS_PER_SECOND, system: Number(fields[12]) / CLOCK_TICKS_PER_SECOND };
}

/** Opens `count` idle clients to `port`, 50 at a time; end them with `closeClients`. */
export async function openIdleClients(port: number, count: number): Promise<pg.Client[]> {
  const clients: pg.Client[] = [];
  for (let i = 0; i < count; i += 50) {
    const batch = Array.from({ length: Math.min(50, count - i) }, async () => {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: DATABASE });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
    });
    await Promise.all(batch);
  }
  return clients;
}

export async function closeClients(clients: pg.Client[]): Promise<void> {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
}
