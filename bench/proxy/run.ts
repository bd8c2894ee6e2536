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
import { machine, table } from '../support.js';
import {
  closeClients, medianOfRotatingRounds, openIdleClients, parseBenchArgs, pgbench, rssKb, startPgBouncer, startPgbenchDatabase, startTandem,
  type Result,
} from './targets.js';

const { duration: DURATION, rounds: ROUNDS, idle: IDLE, clients: CLIENTS, scale: SCALE, own } = parseBenchArgs(
  { clients: '1,8,32', idle: '1000' },
  { scripts: 'select-only,tpcb-like' },
);
const SCRIPTS = own.scripts.split(',') as Array<'select-only' | 'tpcb-like'>;

async function idleMemory(port: number, pid: number): Promise<{ beforeKb: number; afterKb: number; perClientBytes: number }> {
  const beforeKb = rssKb(pid);
  const clients = await openIdleClients(port, IDLE);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const afterKb = rssKb(pid);
  await closeClients(clients);
  return { beforeKb, afterKb, perClientBytes: Math.round(((afterKb - beforeKb) * 1024) / IDLE) };
}

async function main(): Promise<void> {
  const { server, url, major } = await startPgbenchDatabase(SCALE, IDLE + 200);
  const bouncer = await startPgBouncer(server.port, { poolMode: 'session', poolSize: 100, maxClientConn: 2000 });
  const tandem = await startTandem(url, ['--max-client-conn', '2000', '--forwarder', 'native']);
  const tandemNode = await startTandem(url, ['--max-client-conn', '2000', '--forwarder', 'node']);
  const targets: Record<string, number> = { direct: server.port, pgbouncer: bouncer.port, tandem: tandem.port, 'tandem-node': tandemNode.port };
  const rows: Array<Array<string | number>> = [];
  try {
    for (const script of SCRIPTS) {
      for (const clients of CLIENTS) {
        const results: Record<string, Result> = await medianOfRotatingRounds(Object.keys(targets), ROUNDS, async (name, round) => {
          const result = await pgbench(targets[name]!, { clients, threads: Math.min(clients, 2), seconds: DURATION, script });
          process.stderr.write(`${script} c=${clients} round ${round + 1} ${name}: ${result.tps.toFixed(0)} tps, ${result.latencyMs.toFixed(3)} ms\n`);
          return result;
        });
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
