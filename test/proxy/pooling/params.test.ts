/**
 * Client session parameters over pooled server connections: the tracked ones (application_name,
 * DateStyle, TimeZone, …) asked for at login or set since follow each client to whichever server
 * connection it gets; other startup parameters are refused unless ignored; and the per-user limit on
 * server connections. Real PostgreSQL, real clients (node-postgres, postgres.js, psql).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { usePostgres } from '../../support/harness.js';
import { databaseOf, startTestProxy } from '../support.js';
import { poolingOptions } from './support.js';

const db = usePostgres();
const run = promisify(execFile);

const SETTINGS = `SELECT current_setting('application_name') AS app, current_setting('DateStyle') AS datestyle, current_setting('TimeZone') AS tz, current_setting('extra_float_digits') AS efd, pg_backend_pid() AS pid`;

/** A node-postgres client that records the ParameterStatus messages of its welcome. */
async function welcomedClient(config: pg.ClientConfig): Promise<{ client: pg.Client; welcome: Map<string, string> }> {
  const client = new pg.Client(config);
  const welcome = new Map<string, string>();
  client.connection.on('parameterStatus', (message: { parameterName: string; parameterValue: string }) => welcome.set(message.parameterName, message.parameterValue));
  await client.connect();
  return { client, welcome };
}

async function serverDefault(name: string): Promise<string> {
  const { rows } = await db.query(`SELECT current_setting($1) AS value`, [name]);
  return rows[0].value;
}

async function pinnedCount(proxy: Awaited<ReturnType<typeof startTestProxy>>): Promise<number> {
  const body = (await proxy.metrics.text()).body;
  return [...body.matchAll(/^tandem_proxy_pinned_clients_total\{[^}]*\} (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

describe('client parameters on pooled connections', () => {
  it('gives two clients with their own application_name, DateStyle and TimeZone their values in every transaction over one server connection', async () => {
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1 } }) });
    const url = proxy.url(databaseOf(db.url));
    const { client: alpha, welcome } = await welcomedClient({ connectionString: url, application_name: 'alpha', options: '-c DateStyle=German,\\ DMY -c TimeZone=Europe/Berlin' });
    const beta = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'beta', DateStyle: 'SQL, MDY', TimeZone: 'America/New_York', extra_float_digits: '0' } });
    try {
      expect(Object.fromEntries([...welcome].filter(([name]) => ['application_name', 'DateStyle', 'TimeZone'].includes(name)))).toEqual({
        application_name: 'alpha',
        DateStyle: 'German, DMY',
        TimeZone: 'Europe/Berlin',
      });
      const defaultDigits = await serverDefault('extra_float_digits');
      const pids = new Set<number>();
      for (let round = 0; round < 4; round++) {
        await alpha.query('BEGIN');
        const a = (await alpha.query(SETTINGS)).rows[0];
        await alpha.query('COMMIT');
        expect({ ...a, pid: undefined }).toEqual({ app: 'alpha', datestyle: 'German, DMY', tz: 'Europe/Berlin', efd: defaultDigits, pid: undefined });
        const [b] = await beta.begin((sql) => sql.unsafe(SETTINGS));
        expect({ ...b, pid: undefined }).toEqual({ app: 'beta', datestyle: 'SQL, MDY', tz: 'America/New_York', efd: '0', pid: undefined });
        pids.add(a.pid).add(b!.pid);
      }
      // One server connection served both, turned to each client's values in turn.
      expect(pids.size).toBe(1);
      expect(beta.parameters).toMatchObject({ application_name: 'beta', DateStyle: 'SQL, MDY', TimeZone: 'America/New_York' });
      expect(await pinnedCount(proxy)).toBe(0);
    } finally {
      await alpha.end();
      await beta.end();
    }
  });

  it('carries a session-level SET of a tracked parameter to later checkouts without pinning, and forgets one rolled back', async () => {
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1 } }) });
    const url = proxy.url(databaseOf(db.url));
    const [setter, other] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
    await Promise.all([setter.connect(), other.connect()]);
    try {
      const defaults = { tz: await serverDefault('TimeZone'), efd: await serverDefault('extra_float_digits') };
      await setter.query(`SET TimeZone = 'Asia/Tokyo'`);
      await setter.query('SET extra_float_digits = 0');
      await setter.query('BEGIN');
      await setter.query(`SET application_name = 'rolled back'`);
      await setter.query('ROLLBACK');
      await setter.query('BEGIN');
      await setter.query(`SET application_name = 'committed'`);
      await setter.query('COMMIT');
      for (let round = 0; round < 3; round++) {
        const theirs = (await other.query(SETTINGS)).rows[0];
        expect({ tz: theirs.tz, efd: theirs.efd, app: theirs.app }).toEqual({ ...defaults, app: '' });
        const mine = (await setter.query(SETTINGS)).rows[0];
        expect({ tz: mine.tz, efd: mine.efd, app: mine.app }).toEqual({ tz: 'Asia/Tokyo', efd: '0', app: 'committed' });
        expect(mine.pid).toBe(theirs.pid);
      }
      await setter.query('RESET ALL');
      await other.query(`SET TimeZone = 'Pacific/Auckland'`);
      const reset = (await setter.query(SETTINGS)).rows[0];
      expect({ tz: reset.tz, efd: reset.efd, app: reset.app }).toEqual({ ...defaults, app: '' });
      expect(await pinnedCount(proxy)).toBe(0);
      // Anything else still pins.
      await setter.query(`SET statement_timeout = '5s'`);
      expect(await pinnedCount(proxy)).toBe(1);
    } finally {
      await setter.end();
      await other.end();
    }
  });

  it('applies tracked settings in PGOPTIONS, refuses other ones unless --ignore-startup-parameters lists them', async () => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1 } }) });
    const psql = (url: string, options: string) => run('psql', ['-X', '-A', '-t', '-c', 'SHOW DateStyle', url], { encoding: 'utf8', env: { ...process.env, PGOPTIONS: options } });
    expect((await psql(proxy.url(database), '-c DateStyle=German')).stdout.trim()).toBe('German, DMY');
    const refused = await psql(proxy.url(database), '-c work_mem=1MB').catch((error: { stderr: string }) => error);
    expect(refused.stderr).toMatch(/unsupported startup parameter: work_mem/);
    expect(refused.stderr).toMatch(/cannot be pooled/);
    // An invalid value is the server's to refuse: the client hears it before its first answer.
    const invalid = await psql(proxy.url(database), '-c TimeZone=Nowhere/Land').catch((error: { stderr: string }) => error);
    expect(invalid.stderr).toMatch(/invalid value for parameter "TimeZone"/);

    const ignoring = await startTestProxy(db.url, { pooling: poolingOptions({ ignoreStartupParameters: ['work_mem'] }) });
    const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', 'SHOW work_mem', ignoring.url(database)], { encoding: 'utf8', env: { ...process.env, PGOPTIONS: '-c work_mem=1MB -c DateStyle=German' } });
    expect(stdout.trim()).toBe(await serverDefault('work_mem'));
    // A top-level startup parameter follows the same rule.
    const statementTimeout = new pg.Client({ connectionString: proxy.url(database), statement_timeout: 1000 });
    await expect(statementTimeout.connect()).rejects.toMatchObject({ code: '08P01', message: 'unsupported startup parameter: statement_timeout' });
  });

  it('carries the settings --track-extra-parameters names as it carries extra_float_digits: at login, by SET without pinning, never to another client', async () => {
    const extra = ['statement_timeout', 'default_transaction_read_only'];
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 1 }, trackExtraParameters: extra }) });
    const url = proxy.url(databaseOf(db.url));
    const EXTRA = `SELECT current_setting('statement_timeout') AS timeout, current_setting('default_transaction_read_only') AS readonly, pg_backend_pid() AS pid`;
    const { client: reader, welcome } = await welcomedClient({ connectionString: url, statement_timeout: 1000, options: '-c default_transaction_read_only=on' });
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    try {
      const defaults = { timeout: await serverDefault('statement_timeout'), readonly: await serverDefault('default_transaction_read_only') };
      // The server reports default_transaction_read_only (PostgreSQL 14 and later): the client is told its own value.
      expect(welcome.get('default_transaction_read_only')).toBe('on');
      await other.query(`SET statement_timeout = '7s'`);
      await other.query('BEGIN');
      await other.query(`SET statement_timeout = '9s'`);
      await other.query('ROLLBACK');
      for (let round = 0; round < 3; round++) {
        const mine = (await reader.query(EXTRA)).rows[0];
        expect({ timeout: mine.timeout, readonly: mine.readonly }).toEqual({ timeout: '1s', readonly: 'on' });
        const theirs = (await other.query(EXTRA)).rows[0];
        expect({ timeout: theirs.timeout, readonly: theirs.readonly }).toEqual({ timeout: '7s', readonly: defaults.readonly });
        expect(theirs.pid).toBe(mine.pid);
      }
      await expect(reader.query('CREATE TABLE tracked_read_only (x int)')).rejects.toMatchObject({ code: '25006' });
      await other.query('RESET statement_timeout');
      expect((await other.query(EXTRA)).rows[0].timeout).toBe(defaults.timeout);
      expect(await pinnedCount(proxy)).toBe(0);
      // A setting the flag does not name still pins.
      await other.query(`SET work_mem = '1MB'`);
      expect(await pinnedCount(proxy)).toBe(1);
    } finally {
      await reader.end();
      await other.end();
    }
  });

  it('works in session mode: the client gets its values, the next client the defaults', async () => {
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ mode: 'session', settings: { poolSize: 1 } }) });
    const url = proxy.url(databaseOf(db.url));
    const first = new pg.Client({ connectionString: url, application_name: 'first', options: '-c TimeZone=Asia/Tokyo' });
    await first.connect();
    const mine = (await first.query(SETTINGS)).rows[0];
    expect({ app: mine.app, tz: mine.tz }).toEqual({ app: 'first', tz: 'Asia/Tokyo' });
    await first.end();
    const second = new pg.Client({ connectionString: url });
    await second.connect();
    try {
      const theirs = (await second.query(SETTINGS)).rows[0];
      expect({ app: theirs.app, tz: theirs.tz, pid: theirs.pid }).toEqual({ app: '', tz: await serverDefault('TimeZone'), pid: mine.pid });
    } finally {
      await second.end();
    }
  });
});

describe('--max-user-connections', () => {
  it('makes a client wait (and time out) when its user holds the limit, while another user goes on', async () => {
    await db.server.admin(`
      DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ann') THEN CREATE ROLE ann LOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ben') THEN CREATE ROLE ben LOGIN; END IF;
      END $$`);
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 5, maxUserConnections: 1, queryWaitTimeoutMs: 1500 } }) });
    const connect = async (user: string) => {
      const client = new pg.Client({ connectionString: proxy.url(database, user) });
      client.on('error', () => {});
      await client.connect();
      return client;
    };
    const holder = await connect('ann');
    const waiter = await connect('ann');
    const late = await connect('ann');
    const other = await connect('ben');
    try {
      await holder.query('BEGIN');
      // The other user is not held back by ann's limit.
      expect((await other.query('SELECT current_user AS u')).rows[0].u).toBe('ben');
      const waiting = waiter.query('SELECT current_user AS u');
      await expect.poll(() => proxy.status().pools.find((pool) => pool.user === 'ann')?.waitingClients).toBe(1);
      expect(proxy.status().users).toEqual({ maxUserConnections: 1, connections: expect.arrayContaining([{ user: 'ann', connections: 1 }, { user: 'ben', connections: 1 }]) });
      await holder.query('COMMIT');
      expect((await waiting).rows[0].u).toBe('ann');
      await holder.query('BEGIN');
      await expect(late.query('SELECT 1')).rejects.toMatchObject({ code: '08P01', message: expect.stringMatching(/query_wait_timeout.*user "ann" has max_user_connections \(1\)/) });
    } finally {
      await Promise.all([holder, waiter, late, other].map((client) => client.end().catch(() => {})));
    }
  });
});
