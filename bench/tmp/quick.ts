import { cpuSeconds, pgbench, startPgBouncer, startPgbenchDatabase, startTandem } from '../proxy/targets.js';
const clientsList = (process.env.CLIENTS ?? '8,32').split(',').map(Number);
const seconds = Number(process.env.SECONDS ?? 5);
const rounds = Number(process.env.ROUNDS ?? 2);
const { server, url } = await startPgbenchDatabase(10, 400);
const bouncer = await startPgBouncer(server.port, { poolMode: 'transaction', poolSize: 16, maxClientConn: 1000 });
const nat = await startTandem(url, ['--pool-mode', 'transaction', '--auth-type', 'trust', '--pool-size', '16', '--max-client-conn', '1000']);
const node = await startTandem(url, ['--pool-mode', 'transaction', '--auth-type', 'trust', '--pool-size', '16', '--max-client-conn', '1000', '--forwarder', 'node']);
const targets = { pgbouncer: bouncer, native: nat, node } as const;
try {
  for (const clients of clientsList) {
    for (let r = 0; r < rounds; r++) {
      for (const [name, t] of Object.entries(targets)) {
        const before = cpuSeconds(t.pid!);
        const res = await pgbench(t.port, { clients, threads: Math.min(clients, 2), seconds });
        const after = cpuSeconds(t.pid!);
        const us = (a: number, b: number) => (((b - a) * 1e6) / res.transactions).toFixed(0);
        console.log(`c=${clients} r=${r} ${name.padEnd(9)} ${res.tps.toFixed(0).padStart(6)} tps  cpu/tx user ${us(before.user, after.user)} sys ${us(before.system, after.system)}`);
      }
    }
  }
} finally {
  await nat.stop(); await node.stop(); bouncer.stop(); await server.stop();
}
