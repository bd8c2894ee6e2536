/**
 * `--auth-type passthrough`: no secrets configured, the server judges every password. The proxy asks
 * for it in clear text (only over TLS or loopback), logs in to the server with it on a connection that
 * joins the pool, keeps it to open more, and drops it when the server stops taking it.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { encodeStartupMessage, PROTOCOL_3_0 } from '../../../src/proxy/protocol/messages.js';
import { usePostgres } from '../../support/harness.js';
import { capturedLogger, connectThrough, databaseOf, errorsIn, readUntilClose, selfSignedCertificate, startTestProxy } from '../support.js';
import { poolingOptions } from './support.js';

const db = usePostgres();
const run = promisify(execFile);

const ALICE = 'alice-pass-1';
const BOB = 'bob-pass-1';
const WRONG = 'not-the-password-42';

/** alice (SCRAM) and bob (md5), whom the server asks for their passwords; nobody has a rule but no role. */
async function passwordUsers(): Promise<string> {
  // Roles belong to the server, not to the test's database: made once, their passwords set every time.
  await db.server.admin(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'alice') THEN CREATE ROLE alice LOGIN; END IF;
      IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'bob') THEN CREATE ROLE bob LOGIN; END IF;
    END $$`);
  await db.server.admin(`SET password_encryption = 'scram-sha-256'; ALTER ROLE alice PASSWORD '${ALICE}'`);
  await db.server.admin(`SET password_encryption = 'md5'; ALTER ROLE bob PASSWORD '${BOB}'`);
  const database = databaseOf(db.url);
  await db.server.admin(`GRANT ALL ON DATABASE "${database}" TO alice, bob`);
  await db.server.addHbaRules(['host all alice 127.0.0.1/32 scram-sha-256', 'host all bob 127.0.0.1/32 md5', 'host all nobody 127.0.0.1/32 scram-sha-256']);
  return database;
}

/** The server's backends of `user`: what the proxy has logged in as them. */
async function backendsOf(user: string): Promise<Array<{ pid: number; backend_start: Date }>> {
  const { rows } = await db.server.admin(`SELECT pid, backend_start FROM pg_catalog.pg_stat_activity WHERE usename = '${user}' ORDER BY pid`);
  return rows as Array<{ pid: number; backend_start: Date }>;
}

/** Sessions of `database` that have ended (pg_stat_database counts them as they close). */
async function sessionsEnded(database: string): Promise<number> {
  const { rows } = await db.server.admin(`SELECT sessions - sessions_abandoned - sessions_fatal - sessions_killed AS n FROM pg_catalog.pg_stat_database WHERE datname = '${database}'`);
  return Number(rows[0].n);
}

async function failure(connect: Promise<unknown>): Promise<unknown> {
  return connect.then(
    () => new Error('connected'),
    (error: unknown) => error,
  );
}

/** A non-loopback IPv4 address of this machine, where a client does not count as local. */
function outsideAddress(): string | undefined {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses ?? []) if (address.family === 'IPv4' && !address.internal) return address.address;
  }
  return undefined;
}

describe('--auth-type passthrough', () => {
  it('lets the server judge SCRAM and md5 passwords from pg, postgres.js and psql, passes its refusals on as they are, and logs no password', async () => {
    const database = await passwordUsers();
    const { logger, lines } = capturedLogger('debug');
    const proxy = await startTestProxy(db.url, { logger, pooling: poolingOptions({ authType: 'passthrough' }) });
    for (const [user, password] of [['alice', ALICE], ['bob', BOB]] as const) {
      const client = await connectThrough(proxy.url(database, user, password));
      expect((await client.query('SELECT current_user AS who')).rows[0].who).toBe(user);
      await client.end();
      const sql = postgres(proxy.url(database, user, password), { max: 1 });
      const [row] = await sql`SELECT session_user AS who`;
      expect(row!.who).toBe(user);
      await sql.end();
      const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', 'SELECT current_user', proxy.url(database, user, password)]);
      expect(stdout.trim()).toBe(user);
    }

    for (const user of ['alice', 'bob', 'nobody']) {
      expect(await failure(connectThrough(proxy.url(database, user, WRONG)))).toMatchObject({ code: '28P01', message: `password authentication failed for user "${user}"` });
    }
    // No pg_hba rule asks "ghost" for a password, so the server says what it says to a stranger.
    expect(await failure(connectThrough(proxy.url(database, 'ghost', WRONG)))).toMatchObject({ code: '28000', message: 'role "ghost" does not exist' });
    const psql = (await failure(run('psql', ['-X', '-c', 'SELECT 1', proxy.url(database, 'bob', WRONG)]))) as { stderr: string };
    expect(psql.stderr).toContain('password authentication failed for user "bob"');
    expect((await proxy.metrics.text()).body).toMatch(/tandem_proxy_auth_failures_total 5\b/);

    const said = JSON.stringify(lines) + JSON.stringify(proxy.status());
    for (const password of [ALICE, BOB, WRONG]) expect(said).not.toContain(password);
  });

  it('keeps the accepted password: the check connection joins the pool, and a second login needs no server login', async () => {
    const database = await passwordUsers();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ authType: 'passthrough' }) });
    const first = await connectThrough(proxy.url(database, 'alice', ALICE));
    const pid = (await first.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const before = await backendsOf('alice');
    // The connection the server checked the password on is the one the client's queries ran on.
    expect(before.map((b) => b.pid)).toEqual([pid]);

    const second = await connectThrough(proxy.url(database, 'alice', ALICE));
    expect((await second.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(pid);
    expect(await backendsOf('alice')).toEqual(before);
    // A wrong password is never taken for the kept one.
    expect(await failure(connectThrough(proxy.url(database, 'alice', WRONG)))).toMatchObject({ code: '28P01' });
    await first.end();
    await second.end();
  });

  it('closes the check connection when the pool has no room for it', async () => {
    const database = await passwordUsers();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ authType: 'passthrough', mode: 'session', settings: { poolSize: 1 } }) });
    const holder = await connectThrough(proxy.url(database, 'alice', ALICE));
    const pid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await db.server.admin(`ALTER ROLE alice PASSWORD 'alice-pass-2'`);
    // A new password goes to the server on a connection of its own; the pool is full, so it is closed
    // and the client waits for the pool's one connection.
    const ended = await sessionsEnded(database);
    const waiting = connectThrough(proxy.url(database, 'alice', 'alice-pass-2'));
    await expect.poll(() => sessionsEnded(database), { timeout: 10_000 }).toBe(ended + 1);
    expect((await backendsOf('alice')).map((b) => b.pid)).toEqual([pid]);
    await holder.end();
    const next = await waiting;
    expect((await next.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(pid);
    await next.end();
  });

  it('when the password changes on the server: pooled connections go on, the kept password is dropped once refused, the old one is refused and the new one works', async () => {
    const database = await passwordUsers();
    const { logger, lines } = capturedLogger();
    const proxy = await startTestProxy(db.url, { logger, pooling: poolingOptions({ authType: 'passthrough', settings: { poolSize: 2 } }) });
    const holder = await connectThrough(proxy.url(database, 'alice', ALICE));
    const other = await connectThrough(proxy.url(database, 'alice', ALICE));
    await holder.query('BEGIN');
    const pid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;

    await db.server.admin(`ALTER ROLE alice PASSWORD 'alice-pass-2'`);
    // The holder's transaction keeps the pool's one connection: the other client's query needs a
    // new one, which the server refuses with the kept password.
    expect(await other.query('SELECT 1').catch((e: unknown) => e)).toMatchObject({ code: '28P01', message: 'password authentication failed for user "alice"' });
    expect(lines).toEqual(expect.arrayContaining([expect.objectContaining({ user: 'alice', msg: expect.stringContaining('kept password') })]));
    // PostgreSQL does not check the password of a session again.
    expect((await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(pid);
    await holder.query('COMMIT');

    expect(await failure(connectThrough(proxy.url(database, 'alice', ALICE)))).toMatchObject({ code: '28P01', message: 'password authentication failed for user "alice"' });
    const renewed = await connectThrough(proxy.url(database, 'alice', 'alice-pass-2'));
    expect((await renewed.query('SELECT current_user AS who')).rows[0].who).toBe('alice');
    await renewed.end();
    await holder.end();
  });

  it('serves the admin console to --admin-users whose password the server takes', async () => {
    const database = await passwordUsers();
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ authType: 'passthrough' }), adminUsers: ['alice'], adminDatabase: 'tandem' });
    const app = await connectThrough(proxy.url(database, 'bob', BOB));
    const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', 'SHOW CONFIG', proxy.url('tandem', 'alice', ALICE)]);
    expect(stdout).toContain('auth_type|passthrough');
    expect(await failure(connectThrough(proxy.url('tandem', 'alice', WRONG)))).toMatchObject({ code: '28P01' });
    expect(await failure(connectThrough(proxy.url('tandem', 'bob', BOB)))).toMatchObject({ code: '28000', message: expect.stringContaining('not allowed to use the admin console') });
    await app.end();
  });

  const address = outsideAddress();
  if (!address) console.log('passthrough over a non-loopback address: skipped, this machine has no non-loopback IPv4 address');
  it.skipIf(!address)('refuses a non-loopback client without TLS before asking for its password, and takes it over TLS', async () => {
    const database = await passwordUsers();
    const { cert, key } = selfSignedCertificate();
    const proxy = await startTestProxy(db.url, { listen: { host: address!, port: 0 }, tlsCert: cert, tlsKey: key, pooling: poolingOptions({ authType: 'passthrough' }) });
    const url = (sslmode: string) => `postgres://alice:${ALICE}@${address}:${proxy.port}/${database}?sslmode=${sslmode}`;

    const plain = await failure(connectThrough(url('disable')));
    expect(plain).toMatchObject({ code: '28000', message: expect.stringContaining('clear text') });
    // Raw bytes: the refusal is the only answer, with no request for a password before it.
    const socket = net.connect({ host: address!, port: proxy.port });
    const answer = readUntilClose(socket);
    socket.write(encodeStartupMessage(PROTOCOL_3_0, [['user', 'alice'], ['database', database]]));
    const bytes = await answer;
    expect(bytes[0]).toBe(0x45);
    expect(errorsIn(bytes)).toEqual([expect.objectContaining({ C: '28000' })]);

    const secure = await connectThrough(`postgres://alice:${ALICE}@${address}:${proxy.port}/${database}`, { ssl: { rejectUnauthorized: false } });
    expect((await secure.query('SELECT current_user AS who')).rows[0].who).toBe('alice');
    await secure.end();
    const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', 'SELECT current_user', url('require')]);
    expect(stdout.trim()).toBe('alice');
    const refused = (await failure(run('psql', ['-X', '-c', 'SELECT 1', url('disable')]))) as { stderr: string };
    expect(refused.stderr).toContain('clear text');
  });
});
