/** Shared by the benchmarks: a throwaway embedded PostgreSQL tuned like the tests', and timing helpers. */
import { mkdtemp, rm, chmod, readFile } from 'node:fs/promises';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { EmbeddedPostgres } from '../src/dev/embedded.js';
import { freePort } from '../src/dev/ports.js';

export interface BenchServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startBenchServer(settings: Record<string, string> = {}): Promise<BenchServer> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-bench-'));
  await chmod(dir, 0o755);
  const port = await freePort();
  const server = new EmbeddedPostgres({
    dataDir: join(dir, 'data'),
    port,
    settings: { shared_buffers: '512MB', max_wal_size: '4GB', checkpoint_timeout: '30min', max_connections: '200', ...settings },
  });
  await server.initialize();
  await server.start();
  return {
    url: server.url(),
    port,
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A throwaway server and one session on it for `body`; both closed afterwards, whatever happens. */
export async function withBenchSession<T>(body: (db: pg.Client) => Promise<T>): Promise<T> {
  const server = await startBenchServer();
  const db = new pg.Client({ connectionString: server.url });
  await db.connect();
  try {
    return await body(db);
  } finally {
    await db.end();
    await server.stop();
  }
}

export async function timed<T>(body: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const started = performance.now();
  const result = await body();
  return { result, seconds: (performance.now() - started) / 1000 };
}

export function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(line)].join('\n');
}

export const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/**
 * CPU seconds used so far by this process and by the session's server backend (Linux /proc,
 * 100 ticks a second). On a machine that runs other work, wall time includes waiting for a core;
 * CPU time is what a phase costs, whatever else runs beside it.
 */
export async function cpuSeconds(db: pg.Client): Promise<{ client: number; server: number }> {
  const { rows } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const fields = (await readFile(`/proc/${rows[0]!.pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  // After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
  const server = (Number(fields[11]) + Number(fields[12])) / 100;
  const usage = process.cpuUsage();
  return { client: (usage.user + usage.system) / 1e6, server };
}
