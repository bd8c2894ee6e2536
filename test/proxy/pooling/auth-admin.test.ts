/**
 * Pooled modes beyond the happy path: the proxy authenticating md5 and SCRAM users from an auth file
 * and an auth query (and logging in to the server as them), session mode's reset, the admin console
 * through psql and node-postgres, a retired version's pool, and an upstream that drops search_path.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { usePostgres } from '../../support/harness.js';
import { pgbouncerMissing, startPgBouncer, type TestPgBouncer } from '../../support/pgbouncer.js';
import { TWO_SHAPES, createUsersTable, databaseOf, simulateVersions, startTestProxy, versionSchemaOf } from '../support.js';
import { poolingOptions } from './support.js';
import { waitFor } from '../../support/spawn.js';

const db = usePostgres();
const run = promisify(execFile);

/** Roles with passwords, the server asking for them, and their stored secrets as an auth file. */
async function passwordUsers(): Promise<string> {
  // Roles belong to the server, not to the test's database: made once, their passwords set every time.
  await db.server.admin(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'alice') THEN CREATE ROLE alice LOGIN; END IF;
      IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'bob') THEN CREATE ROLE bob LOGIN; END IF;
      IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'carol') THEN CREATE ROLE carol LOGIN; END IF;
    END $$`);
  await db.server.admin(`SET password_encryption = 'scram-sha-256'; ALTER ROLE alice PASSWORD 'alice-secret'; ALTER ROLE carol PASSWORD 'carol-secret'`);
  await db.server.admin(`SET password_encryption = 'md5'; ALTER ROLE bob PASSWORD 'bob-secret'`);
  const database = databaseOf(db.url);
  await db.server.admin(`GRANT ALL ON DATABASE "${database}" TO alice, bob, carol`);
  await db.query(`GRANT ALL ON SCHEMA public TO alice, bob, carol`);
  await db.server.addHbaRules(['host all alice 127.0.0.1/32 scram-sha-256', 'host all carol 127.0.0.1/32 scram-sha-256', 'host all bob 127.0.0.1/32 md5']);
  const { rows } = await db.server.admin(`SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('alice', 'bob') ORDER BY rolname`);
  const dir = mkdtempSync(join(tmpdir(), 'tandem-userlist-'));
  const file = join(dir, 'userlist.txt');
  writeFileSync(file, rows.map((row: { rolname: string; rolpassword: string }) => `"${row.rolname}" "${row.rolpassword}"`).join('\n') + '\n');
  return file;
}

/** Sends `sql` and says whether it was answered within 200 ms: a paused pool must hold it back. */
async function sentWhilePaused(client: pg.Client, sql: string): Promise<{ answered: boolean; result: Promise<pg.QueryResult> }> {
  let answered = false;
  const result = client.query(sql).then((r) => {
    answered = true;
    return r;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  return { answered, result };
}

describe('pooled authentication', () => {
  it('logs SCRAM and md5 users in itself and to the server as them, and refuses a wrong password with the server words', async () => {
    const authFile = await passwordUsers();
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ authType: 'md5', authFile, authQuery: 'SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1' }) });
    for (const [user, password] of [['alice', 'alice-secret'], ['bob', 'bob-secret'], ['carol', 'carol-secret']] as const) {
      const client = new pg.Client({ connectionString: proxy.url(database, user, password) });
      await client.connect();
      const { rows } = await client.query('SELECT current_user AS who');
      expect(rows[0].who).toBe(user);
      await client.end();
      // postgres.js speaks SCRAM and md5 its own way.
      const sql = postgres(proxy.url(database, user, password), { max: 1 });
      const [row] = await sql`SELECT session_user AS who`;
      expect(row!.who).toBe(user);
      await sql.end();
    }
    for (const user of ['alice', 'bob', 'nobody']) {
      const wrong = new pg.Client({ connectionString: proxy.url(database, user, 'wrong') });
      const error = await wrong.connect().catch((e: unknown) => e);
      expect(error).toMatchObject({ code: '28P01', message: `password authentication failed for user "${user}"` });
    }
    expect((await proxy.metrics.text()).body).toMatch(/tandem_proxy_auth_failures_total 3/);
  });

  it('session mode keeps a server connection for the whole session and resets it for the next client', async () => {
    await createUsersTable(db.url);
    await simulateVersions(db.url, TWO_SHAPES);
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ mode: 'session', settings: { poolSize: 1 } }) });
    const first = new pg.Client({ connectionString: proxy.url(`${database}@01_init`) });
    await first.connect();
    await first.query(`SET statement_timeout = '7s'`);
    const pid = (await first.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    expect((await first.query(`SELECT current_setting('statement_timeout') AS t, (current_schemas(false))[1] AS s`)).rows[0]).toEqual({ t: '7s', s: versionSchemaOf('01_init') });
    await first.end();
    const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', `SELECT pg_backend_pid() || ' ' || current_setting('statement_timeout') || ' ' || (current_schemas(false))[1]`, proxy.url(`${database}@01_init`)]);
    expect(stdout.trim()).toBe(`${pid} 0 ${versionSchemaOf('01_init')}`);
  });
});

describe('admin console', () => {
  it('shows pools, clients, servers and versions to admin users, pauses and resumes, and refuses others', async () => {
    await createUsersTable(db.url);
    await simulateVersions(db.url, TWO_SHAPES);
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 2 } }), adminUsers: ['postgres'], adminDatabase: 'tandem' });
    const app = new pg.Client({ connectionString: proxy.url(`${database}@02_rename`) });
    await app.connect();
    await app.query('BEGIN');
    await app.query('SELECT * FROM users');

    const { stdout: pools } = await run('psql', ['-X', '-A', '-F', '|', '-c', 'SHOW POOLS', proxy.url('tandem')]);
    const [header, ...lines] = pools.trim().split('\n');
    const columns = header!.split('|');
    const row = lines.map((line) => Object.fromEntries(line.split('|').map((value, i) => [columns[i], value]))).find((r) => r.version === versionSchemaOf('02_rename'));
    expect(row).toMatchObject({ database, user: 'postgres', cl_active: '1', sv_active: '1', pool_mode: 'transaction' });

    const admin = new pg.Client({ connectionString: proxy.url('tandem') });
    await admin.connect();
    const clients = await admin.query('SHOW CLIENTS');
    expect(clients.rows).toEqual(expect.arrayContaining([expect.objectContaining({ database, version: versionSchemaOf('02_rename'), state: 'active' })]));
    const servers = await admin.query('SHOW SERVERS');
    const backend = (await app.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    expect(servers.rows).toEqual(expect.arrayContaining([expect.objectContaining({ state: 'active', remote_pid: backend })]));
    const versions = await admin.query('SHOW VERSIONS');
    expect(versions.rows).toEqual(expect.arrayContaining([expect.objectContaining({ database, version: versionSchemaOf('02_rename'), clients: 1 })]));
    await app.query('COMMIT');

    // PAUSE waits for lent connections to come back; while paused, a query waits; RESUME lets it run.
    await admin.query(`PAUSE "${database}"`);
    const paused = await sentWhilePaused(app, 'SELECT 1 AS one');
    expect(paused.answered).toBe(false);
    await admin.query(`RESUME "${database}"`);
    expect((await paused.result).rows[0].one).toBe(1);
    await app.query('SELECT pg_sleep(0.05)');
    await admin.end();
    await app.end();

    // SHOW STATS counts since the proxy started, the clients that have ended included; query time
    // is the server's answering time (the pg_sleep above is 50 ms of it).
    const stats = await waitFor(async () => {
      const viewer = new pg.Client({ connectionString: proxy.url('tandem') });
      await viewer.connect();
      const { rows } = await viewer.query('SHOW STATS');
      await viewer.end();
      const row = rows.find((r) => r.database === database && r.version === versionSchemaOf('02_rename'));
      return row && Number(row.total_query_count) >= 6 ? row : undefined;
    }, 10_000, 'the ended client in SHOW STATS');
    expect(Number(stats.total_xact_count)).toBeGreaterThanOrEqual(3);
    expect(Number(stats.total_query_time)).toBeGreaterThanOrEqual(50_000);
    expect(Number(stats.avg_query_time)).toBeGreaterThan(0);

    const stranger = new pg.Client({ connectionString: proxy.url('tandem', 'someone') });
    expect(await stranger.connect().catch((e: unknown) => e)).toMatchObject({ code: '28000', message: expect.stringContaining('not allowed to use the admin console') });
  });
});

describe('admin console commands', () => {
  it('RELOAD re-reads the auth file; KILL closes a database\'s clients and holds it paused until RESUME', async () => {
    const authFile = await passwordUsers();
    const database = databaseOf(db.url);
    const { readFileSync } = await import('node:fs');
    const withBob = readFileSync(authFile, 'utf8');
    // Start with alice only; bob comes with the RELOAD.
    writeFileSync(authFile, withBob.split('\n').filter((line) => !line.startsWith('"bob"')).join('\n'));
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ authType: 'md5', authFile }), adminUsers: ['alice'], adminDatabase: 'tandem' });
    const admin = new pg.Client({ connectionString: proxy.url('tandem', 'alice', 'alice-secret') });
    await admin.connect();
    const bobBefore = await new pg.Client({ connectionString: proxy.url(database, 'bob', 'bob-secret') }).connect().catch((e: unknown) => e);
    expect(bobBefore).toMatchObject({ code: '28P01' });
    writeFileSync(authFile, withBob);
    await admin.query('RELOAD');
    const bob = new pg.Client({ connectionString: proxy.url(database, 'bob', 'bob-secret') });
    // The FATAL first, then the connection's end: keep the first.
    const told = new Promise((resolve) => bob.on('error', resolve));
    await bob.connect();
    expect((await bob.query('SELECT current_user AS who')).rows[0].who).toBe('bob');

    // Idle clients are told at once, as PgBouncer's KILL does.
    await admin.query(`KILL "${database}"`);
    expect(await told).toMatchObject({ code: '57P01', message: expect.stringContaining('KILL') });
    // Paused: a new client logs in (its pool's parameters are known) but its first query waits for RESUME.
    const after = new pg.Client({ connectionString: proxy.url(database, 'bob', 'bob-secret') });
    await after.connect();
    const paused = await sentWhilePaused(after, 'SELECT 2 AS two');
    expect(paused.answered).toBe(false);
    expect((await admin.query('SHOW POOLS')).rows.find((row) => row.database === database)).toMatchObject({ paused: 1 });
    await admin.query(`RESUME "${database}"`);
    expect((await paused.result).rows[0].two).toBe(2);
    await after.end();
    await admin.end();
  });
});

describe('versions and upstreams under pooling', () => {
  it.each(['transaction', 'session'] as const)('in %s mode, closes a retired version\'s pool and tells its clients, while the other version goes on', async (mode) => {
    await createUsersTable(db.url);
    await simulateVersions(db.url, TWO_SHAPES);
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ mode }) });
    const old = new pg.Client({ connectionString: proxy.url(`${database}@01_init`) });
    const current = new pg.Client({ connectionString: proxy.url(`${database}@02_rename`) });
    old.on('error', () => {});
    await old.connect();
    await current.connect();
    await old.query('SELECT * FROM users');
    await current.query('SELECT * FROM users');
    expect(proxy.status().pools.map((p) => p.version).sort()).toEqual([versionSchemaOf('01_init'), versionSchemaOf('02_rename')]);
    await db.query(`DROP SCHEMA ${versionSchemaOf('01_init')} CASCADE`);
    await proxy.refreshVersions();
    const error = await old.query('SELECT 1').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: '57P01', message: expect.stringContaining(`version "${versionSchemaOf('01_init')}"`) });
    await expect.poll(() => proxy.status().pools.map((p) => p.version)).toEqual([versionSchemaOf('02_rename')]);
    expect((await current.query('SELECT mail FROM users WHERE id = 1')).rows[0].mail).toBe('a@example.com');
    await current.end();
  });

  const missing = pgbouncerMissing();
  if (missing) console.log(`skipping the PgBouncer upstream cases: ${missing}`);
  let bouncer: TestPgBouncer | undefined;
  afterEach(async () => {
    await bouncer?.stop();
    bouncer = undefined;
  });

  it.skipIf(missing)('refuses versioned clients with a FATAL that names the cause when a transaction-mode PgBouncer drops search_path, in both proxy modes', async () => {
    await createUsersTable(db.url);
    await simulateVersions(db.url, TWO_SHAPES);
    const database = databaseOf(db.url);
    bouncer = await startPgBouncer({ host: db.server.host, port: db.server.port, database, poolMode: 'transaction', ignoreStartupParameters: ['search_path'] });
    const throughBouncer = `postgres://postgres@127.0.0.1:${bouncer.port}/${database}`;

    const relay = await startTestProxy(throughBouncer);
    const refused = await new pg.Client({ connectionString: relay.url(`${database}@02_rename`) }).connect().catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: '08004', message: expect.stringContaining('search_path startup parameter does not reach PostgreSQL') });
    const readiness = await relay.readiness();
    expect(readiness).toMatchObject({ ready: false, detail: { reason: expect.stringContaining('cannot route versions') } });

    const pooled = await startTestProxy(throughBouncer, { pooling: poolingOptions() });
    const client = new pg.Client({ connectionString: pooled.url(`${database}@02_rename`) });
    const error = await client.connect().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: '08006', message: expect.stringMatching(/opened with search_path .* has search_path "\"\$user\", public"/) });
  });
});
