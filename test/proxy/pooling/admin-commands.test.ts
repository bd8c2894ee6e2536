/**
 * The admin console's RECONNECT, WAIT_CLOSE, DISABLE and ENABLE against a real proxy and server,
 * with the pooled clients forwarded by the native thread and in Node: which server connections
 * close and when, what a client of a disabled database is told, SHOW SERVERS' close_needed and SHOW
 * DATABASES' disabled.
 */
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { selectForwarder } from '../../../src/proxy/native.js';
import { usePostgres } from '../../support/harness.js';
import { databaseOf, selfSignedCertificate, startTestProxy, type TestProxy } from '../support.js';
import { poolingOptions } from './support.js';

const db = usePostgres();
const nativeBuilt = selectForwarder('auto').forwarder !== undefined;
if (!nativeBuilt) console.log('skipping the native cases of the admin commands: the native forwarder is not built (npm run build:native)');
const forwarders = nativeBuilt ? (['native', 'node'] as const) : (['node'] as const);
const clients: pg.Client[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.end().catch(() => {})));
});

async function connect(url: string, options: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, ...options });
  client.on('error', () => {});
  clients.push(client);
  await client.connect();
  return client;
}

async function backendPid(client: pg.Client): Promise<number> {
  return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
}

async function stillOpen(pids: number[]): Promise<number> {
  return (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1)', [pids])).rows[0]!.n;
}

describe.each(forwarders)('RECONNECT and WAIT_CLOSE (%s forwarding)', (forwarder) => {
  it('closes the idle server connections now and the one in a transaction when its client commits; WAIT_CLOSE answers then', async () => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { forwarder, pooling: poolingOptions({ settings: { poolSize: 4 } }), adminUsers: ['postgres'], adminDatabase: 'tandem' });
    const admin = await connect(proxy.url('tandem'));
    const inTransaction = await connect(proxy.url(database));
    const idle = await connect(proxy.url(database));
    await inTransaction.query('BEGIN');
    const held = await backendPid(inTransaction);
    const used = await backendPid(idle);
    expect(used).not.toBe(held);
    // A client with one transaction after another: its connection never sits idle long enough for
    // the thread to give it back on its own (200 ms parked); RECONNECT must take it back between two.
    const busy = await connect(proxy.url(database));
    const busyPids = new Set<number>();
    let stop = false;
    const looping = (async () => {
      while (!stop) busyPids.add(await backendPid(busy));
    })();
    await expect.poll(() => busyPids.size).toBeGreaterThan(0);

    const busyBefore = [...busyPids];
    expect((await admin.query(`RECONNECT "${database}"`)).command).toBe('RECONNECT');
    const servers = (await admin.query('SHOW SERVERS')).rows.filter((row) => row.database === database);
    expect(servers.find((row) => row.remote_pid === held)).toMatchObject({ close_needed: 1 });
    // The idle one is closed at once (the thread gives back what it holds as it comes free).
    await expect.poll(() => stillOpen([used]), { timeout: 10_000 }).toBe(0);

    let answered = false;
    const waited = admin.query(`WAIT_CLOSE "${database}"`).then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(answered).toBe(false);
    // Still its connection until the transaction ends.
    expect(await backendPid(inTransaction)).toBe(held);
    await inTransaction.query('COMMIT');
    await waited;
    stop = true;
    await looping;
    const before = [held, used, ...busyBefore];
    await expect.poll(() => stillOpen(before), { timeout: 10_000 }).toBe(0);

    // New connections serve both clients; none of the old ones is lent again.
    const after = [await backendPid(inTransaction), await backendPid(idle), await backendPid(busy)];
    for (const pid of after) expect(before).not.toContain(pid);
    expect((await admin.query('SHOW SERVERS')).rows.every((row) => row.close_needed === 0)).toBe(true);
    // Nothing left to wait for: WAIT_CLOSE answers at once.
    await admin.query('WAIT_CLOSE');

    // The other PgBouncer listings over the same live proxy.
    const lists = Object.fromEntries((await admin.query('SHOW LISTS')).rows.map((row) => [row.list, row.items]));
    expect(lists).toMatchObject({ databases: 1, users: 1, pools: 1, used_clients: 3, login_clients: 0 });
    expect(lists.used_servers).toBeGreaterThanOrEqual(1);
    expect((await admin.query('SHOW USERS')).rows).toEqual([
      expect.objectContaining({ name: 'postgres', pool_size: 4, pool_mode: 'transaction', current_client_connections: 3 }),
    ]);
    const totals = Object.fromEntries((await admin.query('SHOW TOTALS')).rows.map((row) => [row.name, Number(row.value)]));
    expect(totals.total_xact_count).toBeGreaterThanOrEqual(busyPids.size + 6);
    expect((await admin.query('SHOW STATS_TOTALS')).rows.find((row) => row.database === database)).toBeDefined();
  });
});

describe.each(forwarders)('SHOW CLIENTS and SHOW SERVERS (%s forwarding)', (forwarder) => {
  it('show each client\'s application_name, the proxy\'s end of its socket and its TLS; a server the application_name of the client it serves', async () => {
    const database = databaseOf(db.url);
    const { cert, key } = selfSignedCertificate();
    const proxy = await startTestProxy(db.url, { forwarder, tlsCert: cert, tlsKey: key, pooling: poolingOptions({ settings: { poolSize: 2 } }), adminUsers: ['postgres'], adminDatabase: 'tandem' });
    const admin = await connect(proxy.url('tandem'));
    const checkout = await connect(proxy.url(database), { application_name: 'checkout' });
    const secure = await connect(proxy.url(database), { application_name: 'billing', ssl: { rejectUnauthorized: false } });
    await checkout.query('SELECT 1');
    await secure.query('BEGIN');
    const rows = (await admin.query('SHOW CLIENTS')).rows.filter((row) => row.database === database);
    expect(rows.find((row) => row.application_name === 'checkout')).toMatchObject({ local_addr: '127.0.0.1', local_port: proxy.port, tls: '' });
    const billing = rows.find((row) => row.application_name === 'billing');
    expect(billing).toMatchObject({ local_addr: '127.0.0.1', local_port: proxy.port, tls: expect.stringMatching(/^TLSv1\.[23]\/\w+/) });
    // A SET reaches the listing too.
    await checkout.query("SET application_name = 'checkout-2'");
    expect((await admin.query('SHOW CLIENTS')).rows.some((row) => row.application_name === 'checkout-2')).toBe(true);
    const servers = (await admin.query('SHOW SERVERS')).rows.filter((row) => row.database === database);
    expect(servers.find((row) => row.link === billing!.id)).toMatchObject({ application_name: 'billing' });
    await secure.query('COMMIT');
  });
});

describe.skipIf(!nativeBuilt)('DISABLE and ENABLE', () => {
  it('refuses new clients of the database after authentication with PgBouncer\'s 08P01, native logins included; connected clients go on', async () => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { nativeLogin: true, pooling: poolingOptions({ settings: { poolSize: 2 } }), adminUsers: ['postgres'], adminDatabase: 'tandem' });
    const admin = await connect(proxy.url('tandem'));
    // The first login teaches the thread the startup packet; the second is the thread's own.
    const first = await connect(proxy.url(database));
    await (await connect(proxy.url(database))).query('SELECT 1');
    expect(await nativeLogins(proxy)).toBe(1);

    expect((await admin.query(`DISABLE "${database}"`)).command).toBe('DISABLE');
    expect((await admin.query('SHOW DATABASES')).rows.find((row) => row.name === database)).toMatchObject({ disabled: 1, paused: 0, pool_mode: 'transaction' });
    const refused = await connect(proxy.url(database)).catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: '08P01', message: `database "${database}" is disabled` });
    // Refused in Node: the thread forgot the login it had learned.
    expect(await nativeLogins(proxy)).toBe(1);
    expect((await first.query('SELECT 2 AS two')).rows[0].two).toBe(2);

    expect((await admin.query(`ENABLE "${database}"`)).command).toBe('ENABLE');
    expect((await admin.query('SHOW DATABASES')).rows.find((row) => row.name === database)).toMatchObject({ disabled: 0 });
    expect((await (await connect(proxy.url(database))).query('SELECT 3 AS three')).rows[0].three).toBe(3);

    expect(await admin.query('DISABLE').catch((error: unknown) => error)).toMatchObject({ code: '08P01', message: 'a database is required' });
  });
});

async function nativeLogins(proxy: TestProxy): Promise<number> {
  return Number(/^tandem_proxy_native_logins_total (\d+)/m.exec((await proxy.metrics.text()).body)?.[1] ?? 0);
}
