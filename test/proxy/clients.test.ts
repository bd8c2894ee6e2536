/** psql, pgbench and postgres.js through the proxy, over plain TCP and over TLS terminated at the proxy. */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { TWO_SHAPES, createUsersTable, databaseOf, selfSignedCertificate, simulateVersions, startTestProxy, type TestProxy } from './support.js';

const run = promisify(execFile);

interface Conn {
  proxy: TestProxy;
  database: string;
  tls: boolean;
}

/** A libpq connection string through the proxy; over TLS it verifies the proxy's certificate. */
function conninfo({ proxy, database, tls }: Conn, extra = ''): string {
  const ssl = tls ? `sslmode=verify-full sslrootcert=${selfSignedCertificate().cert}` : 'sslmode=disable';
  return `host=127.0.0.1 port=${proxy.port} user=postgres dbname=${database} ${ssl} ${extra}`.trim();
}

async function psql(conn: Conn, ...args: string[]): Promise<string> {
  const { stdout } = await run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo(conn), ...args], { env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
  return stdout.trim();
}

async function pgbench(conn: Conn, args: string[]): Promise<string> {
  const { stdout, stderr } = await run('pgbench', [...args, conninfo(conn)], { env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
  return stdout + stderr;
}

for (const tls of [false, true]) {
  describe(`command-line clients and postgres.js through the proxy (${tls ? 'TLS' : 'plain TCP'})`, () => {
    const pg = usePostgres();

    async function setUp(): Promise<Conn> {
      const certificate = tls ? selfSignedCertificate() : undefined;
      const proxy = await startTestProxy(pg.url, certificate ? { tlsCert: certificate.cert, tlsKey: certificate.key } : {});
      return { proxy, database: databaseOf(pg.url), tls };
    }

    it('psql runs queries and \\copy in both directions on a chosen version', async () => {
      await createUsersTable(pg.url);
      await simulateVersions(pg.url, TWO_SHAPES);
      const conn = await setUp();
      const old = { ...conn, database: `${conn.database}@01_init` };
      expect(await psql(old, '-c', 'SELECT string_agg(column_name, \',\' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = \'users\' AND table_schema = current_schema()')).toBe('id,email');
      expect(await psql({ ...conn, database: `${conn.database}@latest` }, '-c', 'SELECT mail FROM users WHERE id = 1')).toBe('a@example.com');
      if (tls) expect(await psql(conn, '-c', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).toBe('f');
      const dir = mkdtempSync(join(tmpdir(), 'tandem-copy-'));
      const input = join(dir, 'in.csv');
      const output = join(dir, 'out.csv');
      writeFileSync(input, Array.from({ length: 5000 }, (_, i) => `${i + 10},user${i}@example.com,Name ${i}\n`).join(''));
      await psql(conn, '-c', `\\copy public.users FROM '${input}' WITH (FORMAT csv)`);
      expect(await psql(conn, '-c', 'SELECT count(*) FROM public.users')).toBe('5002');
      await psql(conn, '-c', `\\copy (SELECT * FROM public.users WHERE id >= 10 ORDER BY id) TO '${output}' WITH (FORMAT csv)`);
      expect(readFileSync(output, 'utf8')).toBe(readFileSync(input, 'utf8'));
    });

    it('pgbench runs with 20 clients in simple, extended and prepared modes', async () => {
      const conn = await setUp();
      await pgbench(conn, ['-i', '-q', '-s', '1']);
      for (const mode of ['simple', 'extended', 'prepared']) {
        const output = await pgbench(conn, ['-n', '-M', mode, '-c', '20', '-j', '2', '-t', '25']);
        expect(output).toContain('number of transactions actually processed: 500/500');
        expect(output).toContain('number of failed transactions: 0');
      }
    });

    it('postgres.js pipelines queries on one connection and cancels', async () => {
      const conn = await setUp();
      const url = `postgres://postgres@127.0.0.1:${conn.proxy.port}/${conn.database}`;
      const sql = postgres(url, { max: 1, ssl: tls ? { ca: readFileSync(selfSignedCertificate().cert), servername: 'localhost' } : false, onnotice: () => {} });
      const observer = postgres(url, { max: 1, ssl: tls ? { rejectUnauthorized: false } : false });
      try {
        const results = await Promise.all(Array.from({ length: 100 }, (_, i) => sql`SELECT ${i}::int AS i, repeat('x', ${i * 100}) AS pad`));
        expect(results.map((rows) => rows[0]!.i)).toEqual(Array.from({ length: 100 }, (_, i) => i));
        const sleeping = sql`SELECT pg_sleep(60)`.execute();
        for (;;) {
          const [row] = await observer`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'`;
          if (row!.n > 0) break;
        }
        sleeping.cancel();
        await expect(sleeping).rejects.toMatchObject({ code: '57014' });
        expect((await sql`SELECT 'still here' AS s`)[0]!.s).toBe('still here');
      } finally {
        await Promise.all([sql.end(), observer.end()]);
      }
    });
  });
}
