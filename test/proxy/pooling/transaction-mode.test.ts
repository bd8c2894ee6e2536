/**
 * `--pool-mode transaction` end to end: real PostgreSQL, real clients (node-postgres, postgres.js,
 * psql, pgbench) through the proxy, which authenticates them itself and lends a server connection
 * of the client's (database, user, version) pool per transaction.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { usePostgres } from '../../support/harness.js';
import { poolingOptions } from './support.js';
import { waitFor } from '../../support/spawn.js';
import { TWO_SHAPES, createUsersTable, databaseOf, simulateVersions, startTestProxy, versionSchemaOf } from '../support.js';

const db = usePostgres();

/** Two node-postgres clients, connected through `url`. */
async function connectedClients(url: string): Promise<[pg.Client, pg.Client]> {
  const clients: [pg.Client, pg.Client] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
  await Promise.all(clients.map((client) => client.connect()));
  return clients;
}

async function withVersions(): Promise<string> {
  await createUsersTable(db.url);
  await simulateVersions(db.url, TWO_SHAPES);
  return databaseOf(db.url);
}

/** Backends of the test database other than the asking one and the proxy's version catalog. */
async function serverBackends(): Promise<number> {
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND application_name <> 'tandem proxy'`);
  return rows[0].n;
}

describe('transaction pooling', () => {
  it('serves 64 clients of two versions over a pool of 4 per version, each transaction on its own version', async () => {
    const database = await withVersions();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 4 } }) });
    const clients = await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const version = i % 2 === 0 ? '01_init' : '02_rename';
        const client = new pg.Client({ connectionString: proxy.url(`${database}@${version}`) });
        await client.connect();
        return { client, version };
      }),
    );
    try {
      let wrong = 0;
      await Promise.all(
        clients.map(async ({ client, version }) => {
          for (let round = 0; round < 5; round++) {
            await client.query('BEGIN');
            const { rows } = await client.query('SELECT (pg_catalog.current_schemas(false))[1] AS schema, pg_backend_pid() AS pid');
            if (rows[0].schema !== versionSchemaOf(version)) wrong++;
            await client.query('COMMIT');
          }
        }),
      );
      expect(wrong).toBe(0);
      // 2 pools of at most 4, however many clients.
      expect(await serverBackends()).toBeLessThanOrEqual(8);
      const pools = proxy.status().pools;
      expect(pools.map((p) => p.version).sort()).toEqual([versionSchemaOf('01_init'), versionSchemaOf('02_rename')]);
      for (const pool of pools) expect(pool.active + pool.idle + pool.used + pool.opening).toBeLessThanOrEqual(4);
    } finally {
      await Promise.all(clients.map(({ client }) => client.end()));
    }
  });

  it('moves named prepared statements between server connections (node-postgres and postgres.js)', async () => {
    const database = await withVersions();
    // In Node, where every client takes its connection from the one pool: the native thread would
    // keep b's connection between b's transactions, and a would always get the other one.
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 2 } }), forwarder: 'node' });
    const [a, b] = await connectedClients(proxy.url(`${database}@02_rename`));
    const sql = postgres(proxy.url(`${database}@02_rename`), { max: 3, onnotice: () => {} });
    try {
      const pids = new Set<number>();
      for (let i = 0; i < 20; i++) {
        // Hold one connection in a transaction now and then so that the next statement lands elsewhere.
        if (i % 3 === 0) await b.query('BEGIN');
        const { rows } = await a.query({ name: 'by-id', text: 'SELECT mail, pg_backend_pid() AS pid FROM users WHERE id = $1', values: [1 + (i % 2)] });
        expect(rows[0].mail).toBe(i % 2 === 0 ? 'a@example.com' : 'b@example.com');
        pids.add(rows[0].pid);
        if (i % 3 === 0) await b.query('COMMIT');
        const [row] = await sql`SELECT full_name FROM users WHERE id = ${1 + (i % 2)}`;
        expect(row!.full_name).toBe(i % 2 === 0 ? 'Ada' : 'Bob');
      }
      expect(pids.size).toBe(2);
    } finally {
      await a.end();
      await b.end();
      await sql.end();
    }
  });

  it('prepares a named statement again after a client ran DEALLOCATE ALL or DISCARD ALL on the connection', async () => {
    const database = await withVersions();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1 } }) });
    const client = new pg.Client({ connectionString: proxy.url(`${database}@02_rename`) });
    await client.connect();
    try {
      const byId = { name: 'by-id', text: 'SELECT mail FROM users WHERE id = $1' };
      for (const forget of ['DEALLOCATE ALL', 'DISCARD ALL']) {
        expect((await client.query({ ...byId, values: [1] })).rows).toEqual([{ mail: 'a@example.com' }]);
        // One server connection: the statement is gone from it, and the proxy must know.
        await client.query(forget);
        expect((await client.query({ ...byId, values: [2] })).rows).toEqual([{ mail: 'b@example.com' }]);
        // Refused inside a transaction block, DISCARD ALL forgets nothing: the statement stays usable.
        await client.query('BEGIN');
        await expect(client.query('DISCARD ALL')).rejects.toMatchObject({ code: '25001' });
        await client.query('ROLLBACK');
        expect((await client.query({ ...byId, values: [1] })).rows).toEqual([{ mail: 'a@example.com' }]);
      }
    } finally {
      await client.end();
    }
  });

  it('rolls back the transaction of a client that disconnects in the middle of it', async () => {
    const database = await withVersions();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1 } }) });
    const quitter = new pg.Client({ connectionString: proxy.url(`${database}@02_rename`) });
    quitter.on('error', () => {});
    await quitter.connect();
    await quitter.query('BEGIN');
    await quitter.query(`UPDATE users SET full_name = 'changed' WHERE id = 1`);
    // Gone without COMMIT or Terminate.
    (quitter as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    const next = new pg.Client({ connectionString: proxy.url(`${database}@02_rename`) });
    await next.connect();
    try {
      const { rows } = await next.query(`SELECT full_name, pg_catalog.txid_current_if_assigned() IS NULL AS fresh FROM users WHERE id = 1`);
      expect(rows[0]).toEqual({ full_name: 'Ada', fresh: true });
      // The row lock went with the rollback: an update does not wait.
      await next.query(`SET LOCAL lock_timeout = '1s'`);
      await next.query(`UPDATE users SET full_name = 'next' WHERE id = 1`);
    } finally {
      await next.end();
    }
  });

  it('tells a client that waited query_wait_timeout for a server connection, and serves the others', async () => {
    const database = await withVersions();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1, queryWaitTimeoutMs: 300 } }) });
    const holder = new pg.Client({ connectionString: proxy.url(`${database}@02_rename`) });
    await holder.connect();
    await holder.query('BEGIN');
    const waiter = new pg.Client({ connectionString: proxy.url(`${database}@02_rename`) });
    waiter.on('error', () => {});
    await waiter.connect();
    const error = (await waiter.query('SELECT 1').catch((e: unknown) => e)) as { code?: string; message?: string };
    expect(error.code).toBe('08P01');
    expect(error.message).toMatch(/query_wait_timeout/);
    await holder.query('COMMIT');
    const { rows } = await holder.query('SELECT count(*)::int AS n FROM users');
    expect(rows[0].n).toBe(2);
    await holder.end();
  });

  it('pins a client that runs a session-level SET to its server connection, and counts it', async () => {
    const database = await withVersions();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 2 } }) });
    const [pinned, other] = await connectedClients(proxy.url(`${database}@02_rename`));
    try {
      await pinned.query(`SET statement_timeout = '12s'`);
      const first = (await pinned.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      for (let i = 0; i < 5; i++) {
        await other.query('SELECT 1');
        const { rows } = await pinned.query(`SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS timeout`);
        expect(rows[0]).toEqual({ pid: first, timeout: '12s' });
      }
      // The other client never sees the setting.
      expect((await other.query(`SELECT current_setting('statement_timeout') AS t`)).rows[0].t).toBe('0');
      const metrics = (await proxy.metrics.text()).body;
      expect(metrics).toMatch(/tandem_proxy_pinned_clients_total\{reason="set"\} 1/);
      // Once the pinned client leaves, its connection (and the setting on it) is closed, not lent.
      await pinned.end();
      await waitFor(async () => ((await db.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, [first])).rows.length === 0 ? true : undefined), 10_000, 'the pinned connection to close');
      const fresh = await connectedClients(proxy.url(`${database}@02_rename`));
      for (const client of fresh) expect((await client.query(`SELECT current_setting('statement_timeout') AS t`)).rows[0].t).toBe('0');
      await Promise.all(fresh.map((c) => c.end()));
    } finally {
      await pinned.end().catch(() => {});
      await other.end();
    }
  });

  // The proxy's server-side names (tandem_…) are shared by every client of a connection: a client
  // that drops one by SQL must not leave the next client of that connection a statement the
  // proxy believes prepared and the server has forgotten.
  it.each(['native', 'node'] as const)("pins a client that DEALLOCATEs one of the proxy's statement names, so no other client inherits the gap (%s forwarder)", async (forwarder) => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { forwarder, pooling: poolingOptions({ settings: { poolSize: 1 } }) });
    const url = proxy.url(database);
    const named = { name: 'one', text: 'SELECT 1 AS one' };
    const dropper = new pg.Client(url);
    await dropper.connect();
    let firstPid: number;
    try {
      expect((await dropper.query(named)).rows).toEqual([{ one: 1 }]);
      const { rows } = await dropper.query(`SELECT name, pg_backend_pid() AS pid FROM pg_prepared_statements WHERE name LIKE 'tandem%'`);
      expect(rows).toHaveLength(1);
      firstPid = rows[0].pid;
      await dropper.query(`DEALLOCATE "${rows[0].name}"`);
      expect((await proxy.metrics.text()).body).toMatch(/tandem_proxy_pinned_clients_total\{reason="deallocate"\} 1/);
    } finally {
      await dropper.end();
    }
    // Its connection is closed, not lent: the next client's statement is prepared afresh.
    await waitFor(async () => ((await db.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, [firstPid])).rows.length === 0 ? true : undefined), 10_000, 'the pinned connection to close');
    const next = new pg.Client(url);
    await next.connect();
    try {
      expect((await next.query(named)).rows).toEqual([{ one: 1 }]);
      expect((await next.query(named)).rows).toEqual([{ one: 1 }]);
    } finally {
      await next.end();
    }
  });

  const pgbench = spawnSync('pgbench', ['--version']).status === 0;
  it.skipIf(!pgbench)('runs pgbench -M prepared through transaction mode', async () => {
    const database = databaseOf(db.url);
    const init = spawnSync('pgbench', ['-i', '-s', '1', '-q', db.url], { encoding: 'utf8' });
    expect(init.status, init.stderr).toBe(0);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 3 } }) });
    // Not spawnSync: the proxy runs in this process and must keep serving. One thread per client:
    // pgbench prepares a statement synchronously (PQprepare) on first use, so a single thread with
    // more clients than server connections would wait for a connection its other clients hold, a
    // deadlock it would meet behind PgBouncer too.
    const run = await promisify(execFile)('pgbench', ['-n', '-M', 'prepared', '-c', '8', '-j', '8', '-t', '50', proxy.url(database)], { encoding: 'utf8' });
    expect(run.stdout).toMatch(/number of transactions actually processed: 400\/400/);
    expect(run.stdout + run.stderr).not.toMatch(/error/i);
  });

  it.skipIf(!pgbench)('runs pgbench (TPC-B, extended protocol) through session mode with more clients than server connections', async () => {
    const database = databaseOf(db.url);
    const init = spawnSync('pgbench', ['-i', '-s', '1', '-q', db.url], { encoding: 'utf8' });
    expect(init.status, init.stderr).toBe(0);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ mode: 'session', settings: { poolSize: 4 } }) });
    // -C: a connection per transaction, so the 8 clients take turns on the 4 server connections.
    const run = await promisify(execFile)('pgbench', ['-n', '-C', '-M', 'extended', '-c', '8', '-j', '8', '-t', '20', proxy.url(database)], { encoding: 'utf8' });
    expect(run.stdout).toMatch(/number of transactions actually processed: 160\/160/);
    expect(await serverBackends()).toBeLessThanOrEqual(4);
  });

  it('serves psql scripts in transaction mode, a transaction spanning several lines included', async () => {
    const database = await withVersions();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 2 } }) });
    const script = [
      'BEGIN;',
      `UPDATE users SET full_name = 'Ada L.' WHERE id = 1;`,
      'SELECT full_name FROM users WHERE id = 1;',
      'COMMIT;',
      'SELECT (pg_catalog.current_schemas(false))[1];',
    ].join('\n');
    // From a file, psql sends each statement as a Query of its own: the transaction spans four.
    const file = join(mkdtempSync(join(tmpdir(), 'tandem-psql-')), 'script.sql');
    writeFileSync(file, script);
    const { stdout } = await promisify(execFile)('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-f', file, proxy.url(`${database}@02_rename`)], { encoding: 'utf8' });
    expect(stdout.trim().split('\n')).toEqual(['Ada L.', versionSchemaOf('02_rename')]);
  });
});
