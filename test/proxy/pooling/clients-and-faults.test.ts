/**
 * Pooling (issue #13) under what a pooler meets in production: clients over TLS with SCRAM, cancel
 * requests that must reach the right server connection (or none), a client idle inside a transaction,
 * many clients queueing for a small pool while the admin console watches, min_pool_size and
 * server_lifetime, and the server restarting under full pools. Real PostgreSQL, real clients.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { usePostgres } from '../../support/harness.js';
import { encodeCancelRequest } from '../../../src/proxy/protocol/messages.js';
import { connectThrough, createUsersTable, databaseOf, rawConnect, readUntilClose, selfSignedCertificate, startTestProxy } from '../support.js';
import { poolingOptions, sleepCancelled, untilRunning } from './support.js';

const db = usePostgres();
const run = promisify(execFile);

/** Backends of the test database serving clients, other than the asking one and the proxy's own catalog reads. */
async function serverPids(): Promise<number[]> {
  const { rows } = await db.query(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND application_name <> 'tandem proxy' ORDER BY pid`,
  );
  return rows.map((row: { pid: number }) => row.pid);
}

/** As libpq's PQcancel: a CancelRequest with the key the client was given, then wait for the proxy to close. */
async function cancelWithKeyOf(port: number, client: pg.Client): Promise<void> {
  const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
  const key = Buffer.alloc(8);
  key.writeInt32BE(processID, 0);
  key.writeInt32BE(secretKey, 4);
  const socket = await rawConnect(port);
  const closed = readUntilClose(socket);
  socket.write(encodeCancelRequest(key));
  await closed;
}

describe('pooled clients over TLS', () => {
  it('logs a SCRAM user from the auth file in over TLS in transaction mode (node-postgres and psql), and psql refuses to go without channel binding when told to', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    await db.server.admin(`DROP ROLE IF EXISTS dora`);
    await db.server.admin(`SET password_encryption = 'scram-sha-256'; CREATE ROLE dora LOGIN PASSWORD 'dora-secret'`);
    await db.server.admin(`GRANT ALL ON DATABASE "${database}" TO dora`);
    await db.query(`GRANT SELECT ON public.users TO dora`);
    await db.server.addHbaRules(['host all dora 127.0.0.1/32 scram-sha-256']);
    const { rows } = await db.server.admin(`SELECT rolpassword FROM pg_authid WHERE rolname = 'dora'`);
    expect(rows[0].rolpassword).toMatch(/^SCRAM-SHA-256\$/);
    const authFile = join(mkdtempSync(join(tmpdir(), 'tandem-userlist-')), 'userlist.txt');
    writeFileSync(authFile, `"dora" "${rows[0].rolpassword}"\n`);
    const { cert, key } = selfSignedCertificate();
    const proxy = await startTestProxy(db.url, { tlsCert: cert, tlsKey: key, pooling: poolingOptions({ authType: 'scram-sha-256', authFile, settings: { poolSize: 1 } }) });
    const url = proxy.url(database, 'dora', 'dora-secret');

    const clients = [0, 1].map(() => new pg.Client({ connectionString: url, ssl: { rejectUnauthorized: false } }));
    await Promise.all(clients.map((client) => client.connect()));
    try {
      for (const client of clients) {
        expect((client as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream.encrypted).toBe(true);
      }
      // Two clients over one server connection, a transaction at a time.
      for (let round = 0; round < 3; round++) {
        for (const client of clients) {
          await client.query('BEGIN');
          const { rows: who } = await client.query('SELECT current_user AS who, count(*)::int AS n FROM users');
          expect(who[0]).toEqual({ who: 'dora', n: 2 });
          await client.query('COMMIT');
        }
      }
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }

    const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', `SELECT current_user || ' ' || count(*) FROM users`, '-c', '\\conninfo', `${url}?sslmode=require`]);
    expect(stdout.trim().split('\n')[0]).toBe('dora 2');
    expect(stdout).toMatch(/SSL connection/);
    // The proxy terminates TLS: it cannot bind SCRAM to the client's channel, and says so by not offering it.
    const bound = await run('psql', ['-X', '-A', '-t', '-c', 'SELECT 1', `${url}?sslmode=require&channel_binding=require`]).catch((error: { stderr?: string }) => error);
    expect((bound as { stderr?: string }).stderr).toMatch(/channel binding/);
  });
});

describe('cancel requests in transaction mode', () => {
  it('cancels the query a client runs on its server connection, and nothing while the client holds none', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1 } }) });
    const sleeper = await connectThrough(proxy.url(database));
    const other = await connectThrough(proxy.url(database));
    try {
      expect(await sleepCancelled(db, sleeper, proxy.url(database))).toMatchObject({ code: '57014' });
      await sleeper.query('BEGIN');
      expect((await sleeper.query('SELECT count(*)::int AS n FROM users')).rows[0].n).toBe(2);
      await sleeper.query('COMMIT');

      // The sleeper holds no server connection now; the pool's only one runs the other client's
      // query. A cancel with the sleeper's key must not reach it.
      const running = other.query('SELECT pg_sleep(1), 42 AS answer');
      await untilRunning(db, 'SELECT pg_sleep(1), 42 AS answer');
      await cancelWithKeyOf(proxy.port, sleeper);
      expect((await running).rows[0].answer).toBe(42);
      expect((await sleeper.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    } finally {
      await Promise.all([sleeper.end(), other.end()]);
    }
  });

  it('leaves the query of a client still waiting for a server connection to run once one comes free', async () => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1 } }) });
    const holder = await connectThrough(proxy.url(database));
    const waiter = await connectThrough(proxy.url(database));
    try {
      await holder.query('BEGIN');
      const waiting = waiter.query('SELECT 7 AS seven');
      await expect.poll(() => proxy.status().pools[0]?.waitingClients).toBe(1);
      await cancelWithKeyOf(proxy.port, waiter);
      await holder.query('COMMIT');
      expect((await waiting).rows[0].seven).toBe(7);
    } finally {
      await Promise.all([holder.end(), waiter.end()]);
    }
  });
});

describe('idle_transaction_timeout', () => {
  it('disconnects a client idle inside a transaction with 25P03 and rolls it back, and leaves a client idle outside one alone', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ idleTransactionTimeoutMs: 300, settings: { poolSize: 2 } }) });
    const quiet = await connectThrough(proxy.url(database));
    const idler = new pg.Client({ connectionString: proxy.url(database) });
    // pg reports the FATAL, then the close that follows it.
    const dropped = new Promise<unknown>((resolve) => idler.on('error', resolve));
    await idler.connect();
    const other = await connectThrough(proxy.url(database));
    try {
      // Idle outside a transaction from before the idler's transaction began to after it was ended.
      await quiet.query('SELECT 1');
      let quietErrors = 0;
      quiet.on('error', () => quietErrors++);
      await idler.query('BEGIN');
      await idler.query(`UPDATE users SET full_name = 'uncommitted' WHERE id = 1`);
      expect(await dropped).toMatchObject({ code: '25P03', severity: 'FATAL' });
      // The row lock went with the rollback: an update does not wait for it.
      await other.query('BEGIN');
      await other.query(`SET LOCAL lock_timeout = '2s'`);
      expect((await other.query('SELECT full_name FROM users WHERE id = 1')).rows[0].full_name).toBe('Ada');
      await other.query(`UPDATE users SET full_name = 'other' WHERE id = 1`);
      await other.query('COMMIT');
      expect((await quiet.query('SELECT full_name FROM users WHERE id = 1')).rows[0].full_name).toBe('other');
      expect(quietErrors).toBe(0);
    } finally {
      await Promise.all([quiet.end(), other.end(), idler.end().catch(() => {})]);
    }
  });
});

describe('many clients over a small pool', () => {
  it('serves 50 clients of 10 transactions each over a pool of 2, with SHOW POOLS showing them wait and, at the end, nothing active', async () => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 2 } }), adminUsers: ['postgres'], adminDatabase: 'tandem' });
    const admin = await connectThrough(proxy.url('tandem'));
    const clients = await Promise.all(Array.from({ length: 50 }, () => connectThrough(proxy.url(database))));
    type PoolRow = { database: string; cl_waiting: number; sv_active: number; sv_idle: number };
    const poolRow = async (): Promise<PoolRow | undefined> => ((await admin.query('SHOW POOLS')).rows as PoolRow[]).find((row) => row.database === database);
    try {
      let done = false;
      let mostWaiting = 0;
      const work = Promise.all(
        clients.map(async (client) => {
          for (let i = 0; i < 10; i++) await client.query('SELECT pg_sleep(0.001)');
        }),
      ).finally(() => {
        done = true;
      });
      while (!done) mostWaiting = Math.max(mostWaiting, (await poolRow())?.cl_waiting ?? 0);
      await work;
      expect(mostWaiting).toBeGreaterThan(0);
      await expect.poll(poolRow).toMatchObject({ cl_waiting: 0, sv_active: 0 });
      expect((await poolRow())!.sv_idle).toBeLessThanOrEqual(2);
      expect((await serverPids()).length).toBeLessThanOrEqual(2);
    } finally {
      await Promise.all([admin, ...clients].map((client) => client.end()));
    }
  });
});

describe('min_pool_size and server_lifetime', () => {
  it('keeps min_pool_size connections open past server_idle_timeout, and closes idle ones above it', async () => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 4, minPoolSize: 2, serverIdleTimeoutMs: 200 } }) });
    const clients = await Promise.all(Array.from({ length: 4 }, () => connectThrough(proxy.url(database))));
    try {
      // The pool exists from the first login and fills to its minimum with nobody asking.
      await expect.poll(async () => (await serverPids()).length).toBe(2);
      // Four transactions at once take four connections...
      await Promise.all(clients.map((client) => client.query('BEGIN')));
      await Promise.all(clients.map((client) => client.query('SELECT 1')));
      expect((await serverPids()).length).toBe(4);
      await Promise.all(clients.map((client) => client.query('COMMIT')));
      // ...and idling past server_idle_timeout closes them down to the minimum, never below.
      await expect.poll(async () => (await serverPids()).length).toBe(2);
      const kept = await serverPids();
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(await serverPids()).toEqual(kept);
      expect(proxy.status().pools).toEqual([expect.objectContaining({ idle: 2, active: 0 })]);
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  });

  it('reuses a connection younger than server_lifetime and closes an older one when it is given back', async () => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1, serverLifetimeMs: 1_000 } }) });
    const client = await connectThrough(proxy.url(database));
    try {
      const pid = async () => (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      // A transaction that outlives server_lifetime: the connection is not closed under it...
      await client.query('BEGIN');
      const first = await pid();
      await client.query('SELECT pg_sleep(1.1)');
      expect(await pid()).toBe(first);
      await client.query('COMMIT');
      // ...but once given back it is, and the next transaction gets a new one, young enough to be reused.
      const second = await pid();
      expect(second).not.toBe(first);
      expect(await pid()).toBe(second);
      await expect.poll(serverPids).not.toContain(first);
    } finally {
      await client.end();
    }
  });
});

describe('the server restarting under full pools', () => {
  it('fails the clients that were using or waiting for a connection, and serves new transactions on new connections after the restart', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 2, queryWaitTimeoutMs: 0 } }) });
    const url = proxy.url(database);
    // Idle in transaction mode: it holds no server connection, so the restart passes it by.
    const bystander = await connectThrough(url);
    await bystander.query('SELECT 1');
    const busy = await Promise.all(Array.from({ length: 4 }, () => connectThrough(url)));
    const before = new Set(await serverPids());
    try {
      // Two hold the pool's connections in a long query; two wait for them (no query_wait_timeout).
      const outcomes = busy.map((client) => client.query('SELECT pg_sleep(30)').then(() => undefined, (error: { code?: string; message?: string }) => error));
      // Both counts: with only the waiting ones counted, one client's query may not have reached the
      // proxy yet, and it would wait for a connection after the restart like the other two.
      await expect.poll(() => proxy.status().pools[0]).toMatchObject({ waitingClients: 2, active: 2 });
      await db.server.pause();
      const errors = await Promise.all(outcomes);
      // The two that held a connection get the server's goodbye; the two waiting learn that no new
      // connection could be opened, with the server's reason, instead of waiting on.
      expect(errors.map((error) => error?.code).sort()).toEqual(['08006', '08006', '57P01', '57P01']);
      expect(errors.filter((error) => error?.code === '08006')).toEqual([
        expect.objectContaining({ message: expect.stringContaining('could not open a server connection') }),
        expect.objectContaining({ message: expect.stringContaining('could not open a server connection') }),
      ]);

      await db.server.resume();
      const after = await connectThrough(url);
      try {
        for (let i = 0; i < 5; i++) {
          await after.query('BEGIN');
          expect((await after.query('SELECT count(*)::int AS n FROM users')).rows[0].n).toBe(2);
          await after.query('COMMIT');
        }
        expect((await bystander.query('SELECT count(*)::int AS n FROM users')).rows[0].n).toBe(2);
        const pids = await serverPids();
        expect(pids.length).toBeGreaterThan(0);
        for (const pid of pids) expect(before.has(pid)).toBe(false);
      } finally {
        await after.end();
      }
    } finally {
      await Promise.all([bystander, ...busy].map((client) => client.end().catch(() => {})));
    }
  });
});
