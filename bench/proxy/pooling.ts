/**
 * Pooling benchmark (issue #13): tandem proxy with --pool-mode transaction against PgBouncer in
 * transaction mode with the same pool size, all in one run on one machine over loopback.
 *
 * - pgbench -S at 8, 32 and 200 clients over a pool of 16: direct, PgBouncer, tandem pooled;
 * - the same with -M prepared: direct, tandem pooled, and PgBouncer when it is 1.21 or later
 *   (max_prepared_statements = 200, tandem's default; Debian 12's 1.18 cannot, see below);
 * - pgbench -C -S (a new connection per transaction) at 8 clients: direct, PgBouncer, tandem
 *   pooled, the same with --native-login on (the epoll thread logs learned clients in), and tandem
 *   --pool-mode none (one server connection per client, as before pooling); the native-login
 *   proxy's share of native logins and its fallbacks by reason (from its /metrics) are printed;
 * - 5000 idle clients through tandem pooled: the proxy's RSS per client, and the server backends.
 *
 * Each figure is the median of rotating rounds; beside the TPS, the CPU time the proxy process used
 * per transaction, in user space and in the kernel (/proc/PID/stat before and after each pgbench run). Prints a Markdown table.
 *
 *   npm run build && npx tsx bench/proxy/pooling.ts [--duration 10] [--rounds 3] [--clients 8,32,200] [--pool-size 16] [--connect-clients 8] [--idle 5000] [--only connect|prepared]
 *   PGBOUNCER=/path/to/pgbouncer npx tsx bench/proxy/pooling.ts …   # another PgBouncer (1.21+ prepares in transaction mode)
 *
 * Needs pgbench and pgbouncer (see run.ts), and `ulimit -n` of at least twice --idle plus 1000 (the
 * idle clients' sockets are open in this process and in the proxy at once). Not run by the tests.
 */
import { spawnSync } from 'node:child_process';
import { freePort } from '../../src/dev/ports.js';
import pg from 'pg';
import { machine, table } from '../support.js';
import {
  closeClients, cpuSeconds, DATABASE, medianOfRotatingRounds, openIdleClients, parseBenchArgs, pgbench, pgbouncerVersion, rssKb, startPgBouncer,
  startPgbenchDatabase, startTandem, type CpuTimes, type PgbenchRun, type Result,
} from './targets.js';

const { duration: DURATION, rounds: ROUNDS, idle: IDLE_ASKED, clients: CLIENTS, scale: SCALE, own } = parseBenchArgs(
  { clients: '8,32,200', idle: '5000' },
  { 'pool-size': '16', 'connect-clients': '8', only: '' },
);
/**
 * `--only connect`: the `-S -C` row alone, for work on the login path; `--only prepared`: the
 * `-M prepared` rows alone. Either runs without the idle clients.
 */
const ONLY = own.only;
if (!['', 'connect', 'prepared'].includes(ONLY)) throw new Error(`--only takes "connect" or "prepared", not "${ONLY}"`);
const ONLY_CONNECT = ONLY === 'connect';
const POOL_SIZE = Number(own['pool-size']);
const CONNECT_CLIENTS = Number(own['connect-clients']);
const IDLE = ONLY === '' ? IDLE_ASKED : 0;
const MAX_CLIENT_CONN = IDLE + 1000;

const PGBOUNCER = pgbouncerVersion();
const PGBOUNCER_NO_PREPARED = `n/a (${PGBOUNCER.line} has no prepared statement support in transaction mode: PGBOUNCER=path of 1.21 or later)`;

type TargetName = 'direct' | 'pgbouncer' | 'tandem' | 'tandem-nl' | 'tandem-none';

interface Measured extends Result {
  /** CPU of the proxy process per transaction, µs, user and system; undefined for direct connections. */
  cpuUs: CpuTimes | undefined;
}

/** User plus system, then each: where a proxy spends its time, in its own code or in the kernel. */
function cpuCell(cpu: CpuTimes): string {
  return `${(cpu.user + cpu.system).toFixed(0)} (${cpu.user.toFixed(0)} + ${cpu.system.toFixed(0)})`;
}

function shell(command: string): string {
  return spawnSync('sh', ['-c', command], { encoding: 'utf8' }).stdout.trim();
}

async function main(): Promise<void> {
  const openFiles = Number(shell('ulimit -n'));
  if (IDLE > 0 && openFiles < 2 * IDLE + 1000) {
    throw new Error(`ulimit -n is ${openFiles}: ${IDLE} idle clients need at least ${2 * IDLE + 1000} (run \`ulimit -n ${2 * IDLE + 1000}\` first)`);
  }
  const uptimeBefore = shell('uptime');
  const { server, url, major } = await startPgbenchDatabase(SCALE, Math.max(...CLIENTS, CONNECT_CLIENTS) + 100);
  const bouncer = await startPgBouncer(server.port, { poolMode: 'transaction', poolSize: POOL_SIZE, maxClientConn: MAX_CLIENT_CONN });
  const pooledArgs = ['--pool-mode', 'transaction', '--auth-type', 'trust', '--pool-size', String(POOL_SIZE), '--max-client-conn', String(MAX_CLIENT_CONN)];
  const pooled = await startTandem(url, pooledArgs);
  const nativeLoginHttp = await freePort();
  const nativeLogin = await startTandem(url, [...pooledArgs, '--native-login', 'on', '--http', `127.0.0.1:${nativeLoginHttp}`]);
  const relay = await startTandem(url, ['--pool-mode', 'none', '--max-client-conn', String(MAX_CLIENT_CONN)]);
  const targets: Record<TargetName, { port: number; pid: number | undefined }> = {
    direct: { port: server.port, pid: undefined },
    pgbouncer: bouncer,
    tandem: pooled,
    'tandem-nl': nativeLogin,
    'tandem-none': relay,
  };

  async function measure(names: TargetName[], label: string, run: PgbenchRun): Promise<Record<string, Measured>> {
    return medianOfRotatingRounds(names, ROUNDS, async (name, round) => {
      const { port, pid } = targets[name as TargetName];
      const cpuBefore = pid === undefined ? undefined : cpuSeconds(pid);
      const result = await pgbench(port, run);
      const cpuAfter = pid === undefined ? undefined : cpuSeconds(pid);
      const perTransaction = (before: number, after: number) => ((after - before) * 1e6) / result.transactions;
      const cpuUs = cpuBefore && cpuAfter
        ? { user: perTransaction(cpuBefore.user, cpuAfter.user), system: perTransaction(cpuBefore.system, cpuAfter.system) }
        : undefined;
      process.stderr.write(
        `${label} c=${run.clients} round ${round + 1} ${name}: ${result.tps.toFixed(0)} tps, ${result.latencyMs.toFixed(3)} ms` +
          `${cpuUs === undefined ? '' : `, ${cpuCell(cpuUs)} µs CPU/tx`}\n`,
      );
      return { ...result, cpuUs };
    });
  }

  const rows: Array<Array<string | number>> = [];
  const tps = (m: Measured | undefined) => (m ? m.tps.toFixed(0) : '–');
  const ms = (m: Measured | undefined) => (m ? m.latencyMs.toFixed(3) : '–');
  const cpu = (m: Measured | undefined) => (m?.cpuUs === undefined ? '–' : cpuCell(m.cpuUs));
  const ratio = (a: Measured | undefined, b: Measured | undefined) => (a && b ? `**${(a.tps / b.tps).toFixed(2)}**` : 'n/a');
  function row(label: string, clients: number, r: Record<string, Measured>, pgbouncerCell?: string): void {
    const [d, b, t, l, n] = [r.direct, r.pgbouncer, r.tandem, r['tandem-nl'], r['tandem-none']];
    rows.push([label, clients, tps(d), pgbouncerCell ?? tps(b), tps(t), tps(l), tps(n), ratio(t, b), l ? ratio(l, b) : '–', ms(d), ms(b), ms(t), ms(l), ms(n), cpu(b), cpu(t), cpu(l), cpu(n)]);
  }

  let idle: IdleFigures | undefined;
  let nativeLogins = '';
  try {
    try {
      for (const clients of ONLY === '' ? CLIENTS : []) {
        const threads = Math.min(clients, 2);
        row('-S', clients, await measure(['direct', 'pgbouncer', 'tandem'], '-S', { clients, threads, seconds: DURATION }));
      }
      for (const clients of ONLY_CONNECT ? [] : CLIENTS) {
        // pgbench prepares each statement synchronously on a connection's first use: with fewer
        // threads than clients, a thread waits for a server connection while holding the clients that
        // would give one back, and deadlocks behind any transaction pooler. One thread per client.
        const run: PgbenchRun = { clients, threads: clients, seconds: DURATION, protocol: 'prepared' };
        const names: TargetName[] = PGBOUNCER.preparedStatements ? ['direct', 'pgbouncer', 'tandem'] : ['direct', 'tandem'];
        row('-S -M prepared', clients, await measure(names, '-S -M prepared', run), PGBOUNCER.preparedStatements ? undefined : PGBOUNCER_NO_PREPARED);
      }
      if (ONLY !== 'prepared') {
        const connectRun: PgbenchRun = { clients: CONNECT_CLIENTS, threads: Math.min(CONNECT_CLIENTS, 2), seconds: DURATION, connectPerTransaction: true };
        row('-S -C', CONNECT_CLIENTS, await measure(['direct', 'pgbouncer', 'tandem', 'tandem-nl', 'tandem-none'], '-S -C', connectRun));
        nativeLogins = await nativeLoginCounts(nativeLoginHttp);
      }
    } finally {
      await relay.stop();
      await nativeLogin.stop();
      bouncer.stop();
    }
    // With the pooled proxy alone on the server, every backend on the database is one of its own.
    if (IDLE > 0) idle = await idleClients(server.url, pooled.port, pooled.pid);
  } finally {
    await pooled.stop();
    await server.stop();
  }
  const uptimeAfter = shell('uptime');

  console.log(`\n${machine()}; PostgreSQL ${major}; ${PGBOUNCER.line}; pgbench -T ${DURATION}, scale ${SCALE}, median of ${ROUNDS} rotating rounds`);
  console.log(`pool of ${POOL_SIZE} server connections in both poolers; -j min(clients, 2), but -j clients with -M prepared`);
  console.log(`uptime before: ${uptimeBefore}\nuptime after:  ${uptimeAfter}\n`);
  const headers = [
    'pgbench', 'clients', 'direct TPS', 'PgBouncer TPS', 'tandem TPS', 'tandem native-login TPS', 'tandem none TPS', 'tandem/PgBouncer',
    'tandem native-login/PgBouncer', 'direct ms', 'PgBouncer ms', 'tandem ms', 'tandem native-login ms', 'tandem none ms',
    'PgBouncer µs CPU/tx (user + sys)', 'tandem µs CPU/tx (user + sys)', 'tandem native-login µs CPU/tx (user + sys)', 'tandem none µs CPU/tx (user + sys)',
  ];
  console.log(table(headers, rows));
  if (nativeLogins) console.log(`\ntandem --native-login on, all its -C rounds: ${nativeLogins}`);
  if (idle) {
    const perClient = ((idle.afterKb - idle.beforeKb) * 1024) / IDLE;
    console.log(
      `\n${IDLE} idle clients through tandem --pool-mode transaction --pool-size ${POOL_SIZE}: RSS ${idle.beforeKb} kB before, ` +
        `${idle.afterKb} kB with them: ${Math.round(perClient)} bytes per idle client. Server backends on ${DATABASE}: ` +
        `at most ${idle.peakBackends} while they connected, ${idle.backends} with all of them connected (${idle.backendsByName})`,
    );
  }
}

/** The native-login proxy's logins: how many the thread made, and the fallbacks to JavaScript by reason. */
async function nativeLoginCounts(httpPort: number): Promise<string> {
  const body = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const logins = Number(/^tandem_proxy_native_logins_total (\d+)/m.exec(body)?.[1] ?? 0);
  const fallbacks = [...body.matchAll(/^tandem_proxy_native_login_fallbacks_total\{reason="(\w+)"\} (\d+)/gm)].filter((m) => m[2] !== '0');
  const fellBack = fallbacks.reduce((sum, m) => sum + Number(m[2]), 0);
  const share = logins + fellBack > 0 ? ((100 * logins) / (logins + fellBack)).toFixed(2) : '0';
  return `${logins} native logins, ${fellBack} to JavaScript (${fallbacks.map((m) => `${m[1]} ${m[2]}`).join(', ') || 'none'}): ${share} % native`;
}

interface IdleFigures {
  beforeKb: number;
  afterKb: number;
  /** The most client backends on the database seen while the idle clients were connecting. */
  peakBackends: number;
  backends: number;
  /** Backends by application_name: the pool's connections carry none, the proxy's own one its name. */
  backendsByName: string;
}

const BACKENDS_BY_NAME = `
  SELECT coalesce(nullif(application_name, ''), '(no application_name)') AS name, count(*)::int AS n
    FROM pg_stat_activity
   WHERE datname = $1 AND backend_type = 'client backend'
   GROUP BY 1 ORDER BY 1`;

/** Opens the idle clients through the pooled proxy and asks the server, directly, what it sees meanwhile. */
async function idleClients(serverUrl: string, port: number, pid: number): Promise<IdleFigures> {
  // On the postgres database, so that it does not count itself.
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  const backendsNow = async () => (await admin.query<{ name: string; n: number }>(BACKENDS_BY_NAME, [DATABASE])).rows;
  const total = (rows: Array<{ n: number }>) => rows.reduce((sum, r) => sum + r.n, 0);
  let peakBackends = 0;
  let connecting = true;
  const watching = (async () => {
    while (connecting) {
      peakBackends = Math.max(peakBackends, total(await backendsNow()));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  const beforeKb = rssKb(pid);
  let clients: pg.Client[] = [];
  try {
    clients = await openIdleClients(port, IDLE);
    connecting = false;
    await watching;
    // Lets the proxy's allocations settle (and V8 collect what the logins left behind) before reading.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const afterKb = rssKb(pid);
    const rows = await backendsNow();
    const backends = total(rows);
    return { beforeKb, afterKb, peakBackends: Math.max(peakBackends, backends), backends, backendsByName: rows.map((r) => `${r.name}: ${r.n}`).join(', ') || 'none' };
  } finally {
    connecting = false;
    await watching.catch(() => {});
    await closeClients(clients);
    await admin.end();
  }
}

await main();
