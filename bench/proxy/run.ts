/**
 * Proxy benchmark: pgbench -S and the default TPC-B-like script at 1, 8 and 32 clients, directly
 * against PostgreSQL, through PgBouncer (session mode) and through tandem proxy (twice: with the
 * native forwarder and with --forwarder node), all in one run on one machine over loopback; then
 * tandem's memory per idle client (native forwarder). Prints a Markdown table.
 *
 *   npm run build && npx tsx bench/proxy/run.ts [--duration 10] [--rounds 3] [--idle 1000] [--clients 1,8,32] [--scripts select-only,tpcb-like]
 *
 * Needs pgbench and pgbouncer (Debian: apt-get install -y postgresql-client pgbouncer). As root,
 * PgBouncer runs as the postgres user (it refuses to run as root). Not run by the test suite.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort } from '../../src/dev/ports.js';
import { machine, startBenchServer, table } from '../support.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    idle: { type: 'string', default: '1000' },
    clients: { type: 'string', default: '1,8,32' },
    scale: { type: 'string', default: '10' },
    scripts: { type: 'string', default: 'select-only,tpcb-like' },
  },
});
const DURATION = Number(args.duration);
const ROUNDS = Number(args.rounds);
const IDLE = Number(args.idle);
const CLIENTS = args.clients.split(',').map(Number);
const SCALE = Number(args.scale);
const SCRIPTS = args.scripts.split(',') as Array<'select-only' | 'tpcb-like'>;
const DATABASE = 'bench';

interface Result {
  tps: number;
  latencyMs: number;
}

function run(command: string, argv: string[], env: NodeJS.ProcessEnv = {}): string {
  const result = spawnSync(command, argv, { encoding: 'utf8', env: { ...process.env, ...env } });
  if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} failed:\n${result.stderr}\n${result.stdout}`);
  return result.stdout + result.stderr;
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

async function pgbench(port: number, clients: number, script: 'select-only' | 'tpcb-like'): Promise<Result> {
  const output = await runAsync('pgbench', [
    '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres',
    '-b', script, '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(DURATION), DATABASE,
  ]);
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(output);
  const latency = /latency average = ([\d.]+) ms/.exec(output);
  if (!tps || !latency) throw new Error(`cannot read pgbench output:\n${output}`);
  return { tps: Number(tps[1]), latencyMs: Number(latency[1]) };
}

function median(results: Result[]): Result {
  const sorted = [...results].sort((a, b) => a.tps - b.tps);
  return sorted[Math.floor(sorted.length / 2)]!;
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

async function startPgBouncer(pgPort: number): Promise<{ port: number; stop(): void }> {
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
      'pool_mode = session',
      'max_client_conn = 2000',
      'default_pool_size = 100',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
  );
  for (const file of ['userlist.txt', 'pgbouncer.ini']) chmodSync(join(dir, file), 0o644);
  const child = spawn('runuser', ['-u', 'postgres', '--', 'pgbouncer', join(dir, 'pgbouncer.ini')], { stdio: 'ignore' });
  await waitForPort(port, child, 'pgbouncer');
  return {
    port,
    stop() {
      // runuser does not pass signals on; PgBouncer's own pid file names the process to stop.
      const pid = Number(readFileSync(join(dir, 'pgbouncer.pid'), 'utf8').trim());
      if (pid > 0) process.kill(pid, 'SIGINT');
      child.kill('SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startTandem(pgUrl: string, forwarder: 'native' | 'node'): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const argv = ['bin/tandem.js', '--postgres-url', pgUrl, '--log-level', 'warn', 'proxy', '--listen', `127.0.0.1:${port}`, '--max-client-conn', '2000', '--shutdown-grace', '0s', '--forwarder', forwarder];
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

function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]);
}

async function idleMemory(port: number, pid: number): Promise<{ beforeKb: number; afterKb: number; perClientBytes: number }> {
  const beforeKb = rssKb(pid);
  const clients: pg.Client[] = [];
  for (let i = 0; i < IDLE; i += 50) {
    const batch = Array.from({ length: Math.min(50, IDLE - i) }, async () => {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: DATABASE });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
    });
    await Promise.all(batch);
  }
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const afterKb = rssKb(pid);
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  return { beforeKb, afterKb, perClientBytes: Math.round(((afterKb - beforeKb) * 1024) / IDLE) };
}

async function main(): Promise<void> {
  const server = await startBenchServer({ max_connections: String(IDLE + 200) });
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${DATABASE}`);
  const { rows: version } = await admin.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  const major = Math.floor(Number(version[0]!.v) / 10_000);
  await admin.end();
  const pgUrl = new URL(server.url);
  pgUrl.pathname = `/${DATABASE}`;
  run('pgbench', ['-h', '127.0.0.1', '-p', String(server.port), '-U', 'postgres', '-i', '-q', '-s', String(SCALE), DATABASE]);
  const bouncer = await startPgBouncer(server.port);
  const tandem = await startTandem(pgUrl.toString(), 'native');
  const tandemNode = await startTandem(pgUrl.toString(), 'node');
  const targets = { direct: server.port, pgbouncer: bouncer.port, tandem: tandem.port, 'tandem-node': tandemNode.port } as const;
  const rows: Array<Array<string | number>> = [];
  try {
    for (const script of SCRIPTS) {
      for (const clients of CLIENTS) {
        // Rounds rotate the order of the targets, and each figure is the median of its rounds, so
        // that drift on a shared 2-core machine does not favour whoever runs first.
        const runs: Record<string, Result[]> = { direct: [], pgbouncer: [], tandem: [], 'tandem-node': [] };
        const names = Object.keys(targets) as Array<keyof typeof targets>;
        for (let round = 0; round < ROUNDS; round++) {
          for (let i = 0; i < names.length; i++) {
            const name = names[(i + round) % names.length]!;
            const result = await pgbench(targets[name], clients, script);
            runs[name]!.push(result);
            process.stderr.write(`${script} c=${clients} round ${round + 1} ${name}: ${result.tps.toFixed(0)} tps, ${result.latencyMs.toFixed(3)} ms\n`);
          }
        }
        const results: Record<string, Result> = Object.fromEntries(Object.entries(runs).map(([name, list]) => [name, median(list)]));
        const d = results.direct!;
        const b = results.pgbouncer!;
        const t = results.tandem!;
        const n = results['tandem-node']!;
        rows.push([
          script === 'select-only' ? '-S' : 'TPC-B',
          clients,
          d.tps.toFixed(0),
          b.tps.toFixed(0),
          t.tps.toFixed(0),
          n.tps.toFixed(0),
          (b.tps / d.tps).toFixed(2),
          (t.tps / d.tps).toFixed(2),
          `**${(t.tps / b.tps).toFixed(2)}**`,
          (n.tps / b.tps).toFixed(2),
          d.latencyMs.toFixed(3),
          b.latencyMs.toFixed(3),
          t.latencyMs.toFixed(3),
          n.latencyMs.toFixed(3),
        ]);
      }
    }
    // --idle 0 skips the memory measurement.
    const memory = IDLE > 0 ? await idleMemory(tandem.port, tandem.pid) : undefined;
    console.log(`\n${machine()}; PostgreSQL ${major}; pgbench -T ${DURATION} -j min(clients,2), scale ${SCALE}, median of ${ROUNDS} rotating rounds\n`);
    const headers = [
      'script', 'clients', 'direct TPS', 'PgBouncer TPS', 'tandem TPS', 'tandem node TPS', 'PgBouncer/direct', 'tandem/direct',
      'tandem/PgBouncer', 'node/PgBouncer', 'direct ms', 'PgBouncer ms', 'tandem ms', 'tandem node ms',
    ];
    console.log(table(headers, rows));
    if (memory) console.log(
      `\ntandem RSS: ${memory.beforeKb} kB before, ${memory.afterKb} kB with ${IDLE} idle clients: ${memory.perClientBytes} bytes per idle client`,
    );
  } finally {
    await tandemNode.stop();
    await tandem.stop();
    bouncer.stop();
    await server.stop();
  }
}

await main();
