/**
 * Native logins (`--native-login on`): the native thread accepts the clients and logs in itself
 * those whose startup packet JavaScript has logged in before; everything else comes to JavaScript.
 * Real PostgreSQL and real clients (node-postgres, postgres.js, psql, pgbench -C); which path logged
 * a client in is read from the proxy's counters (tandem_proxy_native_logins_total and the fallbacks).
 */
import { execFile, spawnSync } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { usePostgres } from '../../support/harness.js';
import { selectForwarder } from '../../../src/proxy/native.js';
import { TWO_SHAPES, capturedLogger, connectThrough, createUsersTable, databaseOf, selfSignedCertificate, simulateVersions, startTestProxy, versionSchemaOf, type TestProxy } from '../support.js';
import { poolingOptions, sleepCancelled } from './support.js';

const db = usePostgres();
const run = promisify(execFile);
const nativeBuilt = selectForwarder('auto').forwarder !== undefined;
if (!nativeBuilt) console.log('skipping native logins: the native forwarder is not built (npm run build:native)');

async function counts(proxy: TestProxy): Promise<{ logins: number; fallbacks: Record<string, number> }> {
  const body = (await proxy.metrics.text()).body;
  const logins = Number(/^tandem_proxy_native_logins_total (\d+)/m.exec(body)?.[1] ?? 0);
  const fallbacks: Record<string, number> = {};
  for (const match of body.matchAll(/^tandem_proxy_native_login_fallbacks_total\{reason="(\w+)"\} (\d+)/gm)) fallbacks[match[1]!] = Number(match[2]);
  return { logins, fallbacks };
}

/** Clients logged in so far (tandem_proxy_connections_total{result="established"}). */
async function established(proxy: TestProxy): Promise<number> {
  return Number(/^tandem_proxy_connections_total\{result="established"\} (\d+)/m.exec((await proxy.metrics.text()).body)?.[1] ?? 0);
}

/** Client sessions the proxy has open now (its gauge, summed over versions). */
async function openClients(proxy: TestProxy): Promise<number> {
  const body = (await proxy.metrics.text()).body;
  return [...body.matchAll(/^tandem_proxy_client_connections\{[^}]*\} (\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

async function nativeProxy(options: Parameters<typeof startTestProxy>[1] = {}): Promise<TestProxy> {
  return startTestProxy(db.url, { nativeLogin: true, pooling: poolingOptions({ settings: { poolSize: 2 } }), ...options });
}

/** One query on a new connection, closed after. */
async function once<T>(url: string, sql: string): Promise<T[]> {
  const client = await connectThrough(url);
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

describe.skipIf(!nativeBuilt)('native logins', () => {
  it('logs a login JavaScript made before in natively, each to its own version, with node-postgres, postgres.js and psql', async () => {
    await createUsersTable(db.url);
    await simulateVersions(db.url, TWO_SHAPES);
    const database = databaseOf(db.url);
    const proxy = await nativeProxy();
    const oldUrl = proxy.url(`${database}@01_init`);
    const newUrl = proxy.url(`${database}@02_rename`);
    // The first login of each startup packet is JavaScript's, and teaches the thread.
    expect(await once(oldUrl, 'SELECT email FROM users WHERE id = 1')).toEqual([{ email: 'a@example.com' }]);
    expect(await once(newUrl, 'SELECT mail FROM users WHERE id = 1')).toEqual([{ mail: 'a@example.com' }]);
    expect(await counts(proxy)).toMatchObject({ logins: 0, fallbacks: { unlearned: 2 } });
    for (let i = 0; i < 3; i++) {
      expect(await once(oldUrl, 'SELECT email, current_setting(\'search_path\') AS path FROM users WHERE id = 1')).toEqual([{ email: 'a@example.com', path: expect.stringMatching(`^"${versionSchemaOf('01_init')}"`) }]);
      expect(await once(newUrl, 'SELECT mail FROM users WHERE id = 1')).toEqual([{ mail: 'a@example.com' }]);
    }
    expect(await counts(proxy)).toMatchObject({ logins: 6, fallbacks: { unlearned: 2 } });

    // postgres.js: its own startup packet, learned once, then native.
    for (let i = 0; i < 2; i++) {
      const sql = postgres(newUrl, { max: 1, onnotice: () => {} });
      try {
        expect(await sql`SELECT mail FROM users WHERE id = 1`).toEqual([{ mail: 'a@example.com' }]);
      } finally {
        await sql.end();
      }
    }
    // psql: a TLS request answered 'N' by the thread (sslmode=prefer), then its startup packet.
    for (let i = 0; i < 2; i++) {
      const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', 'SELECT email FROM users WHERE id = 1', oldUrl]);
      expect(stdout.trim()).toBe('a@example.com');
    }
    const after = await counts(proxy);
    expect(after.logins).toBe(8);
    expect(after.fallbacks.unlearned).toBe(4);
    // Every native client was logged and counted as a client: established connections are all of them
    // (the last ones once the thread has reported them, within its report window).
    await expect.poll(async () => established(proxy)).toBe(12);
  });

  it('cancels the query of a natively logged-in client, and counts it in SHOW CLIENTS and /status', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const proxy = await nativeProxy({ adminUsers: ['postgres'], adminDatabase: 'tandem' });
    await once(proxy.url(database), 'SELECT 1');
    const sleeper = await connectThrough(proxy.url(database));
    const other = await connectThrough(proxy.url(database));
    const admin = await connectThrough(proxy.url('tandem'));
    try {
      expect((await counts(proxy)).logins).toBe(2);
      // The admin console's login is JavaScript's (not learned: another packet, and never taught).
      const clients = (await admin.query('SHOW CLIENTS')).rows.filter((row: { database: string }) => row.database === database);
      expect(clients).toHaveLength(2);
      // The proxy's end of each connection, as for a client logged in by Node.
      for (const row of clients) expect(row).toMatchObject({ local_addr: '127.0.0.1', local_port: proxy.port, addr: '127.0.0.1' });
      expect(proxy.status().clients).toBe(3);
      expect(proxy.status().databases[database]?.clients['']?.clients ?? Object.values(proxy.status().databases[database]?.clients ?? {})[0]?.clients).toBe(2);
      expect(await sleepCancelled(db, sleeper, proxy.url(database))).toMatchObject({ code: '57014' });
      expect((await sleeper.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect((await counts(proxy)).fallbacks.cancel).toBe(1);
    } finally {
      await Promise.all([sleeper, other, admin].map((client) => client.end()));
    }
  });

  it('leaves TLS clients to JavaScript when the proxy has a certificate, and still logs plain ones in natively', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { cert, key } = selfSignedCertificate();
    const proxy = await nativeProxy({ tlsCert: cert, tlsKey: key });
    for (let i = 0; i < 2; i++) {
      const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', 'SELECT 1', '-c', '\\conninfo', `${proxy.url(database)}?sslmode=require`]);
      expect(stdout).toMatch(/SSL connection/);
    }
    for (let i = 0; i < 2; i++) expect(await once(proxy.url(database), 'SELECT 2 AS two')).toEqual([{ two: 2 }]);
    expect(await counts(proxy)).toMatchObject({ logins: 1, fallbacks: { tls: 2, unlearned: 1 } });
  });

  it('forgets a retired version: no native login to it, and its natively logged-in client is told', async () => {
    await createUsersTable(db.url);
    await simulateVersions(db.url, TWO_SHAPES);
    const database = databaseOf(db.url);
    const proxy = await nativeProxy();
    const oldUrl = proxy.url(`${database}@01_init`);
    await once(oldUrl, 'SELECT 1');
    const native = await connectThrough(oldUrl);
    native.on('error', () => {});
    expect((await counts(proxy)).logins).toBe(1);
    await db.query(`DROP SCHEMA ${versionSchemaOf('01_init')} CASCADE`);
    await proxy.refreshVersions();
    const told = await native.query('SELECT 1').catch((error: unknown) => error);
    expect(told).toMatchObject({ code: '57P01', message: expect.stringContaining(`version "${versionSchemaOf('01_init')}"`) });
    const refused = await connectThrough(oldUrl).catch((error: unknown) => error);
    expect(refused).toMatchObject({ message: expect.stringContaining('01_init') });
    expect((await counts(proxy)).logins).toBe(1);
  });

  it('keeps what it learned across the version cache TTL, and forgets it when the version list changes', async () => {
    await createUsersTable(db.url);
    await simulateVersions(db.url, TWO_SHAPES.slice(0, 1));
    const database = databaseOf(db.url);
    const proxy = await nativeProxy({ versionCacheTtlMs: 100 });
    await once(proxy.url(database), 'SELECT 1');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await once(proxy.url(database), 'SELECT current_setting(\'search_path\') AS path')).toEqual([{ path: expect.stringMatching(`^"${versionSchemaOf('01_init')}"`) }]);
    expect((await counts(proxy)).logins).toBe(1);
    // A new version becomes the default: the next plain login is JavaScript's again, and goes there.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { addVersion } = await import('../support.js');
    await addVersion(client, TWO_SHAPES[1]!);
    await client.end();
    await proxy.refreshVersions();
    expect(await once(proxy.url(database), 'SELECT current_setting(\'search_path\') AS path')).toEqual([{ path: expect.stringMatching(`^"${versionSchemaOf('02_rename')}"`) }]);
    expect(await counts(proxy)).toMatchObject({ logins: 1, fallbacks: { unlearned: 2 } });
    expect(await once(proxy.url(database), 'SELECT current_setting(\'search_path\') AS path')).toEqual([{ path: expect.stringMatching(`^"${versionSchemaOf('02_rename')}"`) }]);
    expect((await counts(proxy)).logins).toBe(2);
  });

  it('honours --max-client-conn across native and JavaScript logins', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const proxy = await nativeProxy({ maxClientConn: 3 });
    await once(proxy.url(database), 'SELECT 1');
    // That client was logged in by JavaScript, which gives its place back when it sees the end
    // (after the client has hung up): until then a third login would be one too many, and go to JavaScript.
    await expect.poll(() => openClients(proxy)).toBe(0);
    const clients = await Promise.all([1, 2, 3].map(() => connectThrough(proxy.url(database))));
    try {
      expect((await counts(proxy)).logins).toBe(3);
      const refused = await connectThrough(proxy.url(database)).catch((error: unknown) => error);
      expect(refused).toMatchObject({ code: '53300' });
      expect((await counts(proxy)).fallbacks.max_client_conn).toBe(1);
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
    await expect.poll(() => proxy.status().clients).toBe(0);
    expect(await once(proxy.url(database), 'SELECT 3 AS three')).toEqual([{ three: 3 }]);
  });

  it('keeps a natively logged-in client\'s SET to itself: the next native logins start from the learned values', async () => {
    const database = databaseOf(db.url);
    const proxy = await nativeProxy();
    const zone = (await once<{ TimeZone: string }>(proxy.url(database), 'SHOW TimeZone'))[0]!.TimeZone;
    const setter = await connectThrough(proxy.url(database));
    try {
      // The server reports the change: the thread hands the client back to Node, which carries it.
      await setter.query(`SET TimeZone = '${zone === 'Asia/Tokyo' ? 'Europe/Paris' : 'Asia/Tokyo'}'`);
      const mine = (await setter.query('SHOW TimeZone')).rows[0].TimeZone as string;
      expect(mine).not.toBe(zone);
      for (let i = 0; i < 2; i++) {
        // A named statement hands the client back too: Node then serves it with its own values.
        const next = await connectThrough(proxy.url(database));
        try {
          expect((await next.query('SHOW TimeZone')).rows).toEqual([{ TimeZone: zone }]);
          expect((await next.query({ name: 'zone', text: 'SHOW TimeZone' })).rows).toEqual([{ TimeZone: zone }]);
        } finally {
          await next.end();
        }
      }
      expect((await setter.query('SHOW TimeZone')).rows).toEqual([{ TimeZone: mine }]);
      expect((await counts(proxy)).logins).toBe(3);
    } finally {
      await setter.end();
    }
  });

  it('shuts down cleanly while clients are mid-startup: they are closed, the logged-in one is told, nothing hangs', async () => {
    const database = databaseOf(db.url);
    const proxy = await nativeProxy();
    await once(proxy.url(database), 'SELECT 1');
    const live = await connectThrough(proxy.url(database));
    const liveEnded = new Promise<void>((resolve) => live.on('end', () => resolve()));
    live.on('error', () => {});
    expect((await counts(proxy)).logins).toBe(1);
    /** A raw client that sends `bytes`, and what the proxy sent it until it closed. */
    const raw = (bytes: Buffer) => {
      const socket = net.connect(proxy.port, '127.0.0.1');
      socket.on('error', () => {});
      let received = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
      const closed = new Promise<Buffer>((resolve) => socket.on('close', () => resolve(received)));
      socket.on('connect', () => socket.write(bytes));
      return { socket, closed, received: () => received };
    };
    const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    // Answered 'N' by the thread, then half a startup packet; another sends nothing at all.
    const half = raw(sslRequest);
    await expect.poll(() => half.received().toString()).toBe('N');
    half.socket.write(Buffer.from([0, 0, 0, 40, 0, 3, 0, 0, 0x75]));
    const silent = raw(Buffer.alloc(0));
    await new Promise<void>((resolve) => silent.socket.once('connect', () => resolve()));
    await proxy.shutdown(0);
    expect((await half.closed).toString()).toBe('N');
    await silent.closed;
    await liveEnded;
    // Nothing accepts any more.
    await expect(connectThrough(proxy.url(database))).rejects.toThrow();
  });

  const ss = spawnSync('ss', ['-V']).status === 0;
  it.skipIf(!ss)('gives the clients it accepts a keepalive timer, as Node\'s listener does, natively logged in or not', async () => {
    const database = databaseOf(db.url);
    const proxy = await nativeProxy();
    const first = await connectThrough(proxy.url(database));
    const native = await connectThrough(proxy.url(database));
    try {
      expect(await counts(proxy)).toMatchObject({ logins: 1, fallbacks: { unlearned: 1 } });
      // The thread sets SO_KEEPALIVE (and TCP_NODELAY, which ss does not show) once on the listening
      // socket; Linux gives every accepted socket its options, so each of the two has the timer.
      const { stdout } = await run('ss', ['-t', '-n', '-o', '-H', 'state', 'established', `( sport = :${proxy.port} )`]);
      const accepted = stdout.trim().split('\n').filter((line) => line.length > 0);
      expect(accepted).toHaveLength(2);
      for (const line of accepted) expect(line).toMatch(/timer:\(keepalive,/);
    } finally {
      await Promise.all([first, native].map((client) => client.end()));
    }
  });

  it('gives a native client\'s --max-client-conn place back when it ends, before JavaScript has heard of the end', async () => {
    const database = databaseOf(db.url);
    const proxy = await nativeProxy({ maxClientConn: 2 });
    await once(proxy.url(database), 'SELECT 1');
    // That first client was logged in by JavaScript, which gives its place back when it sees the
    // end: until then the thread counts it, and would rightly leave a login to JavaScript.
    await expect.poll(() => openClients(proxy)).toBe(0);
    const kept = await connectThrough(proxy.url(database));
    try {
      // Each ends (the thread closes its socket, and counts the end before) and the next takes its place at once.
      for (let i = 0; i < 5; i++) expect(await once(proxy.url(database), `SELECT ${i} AS i`)).toEqual([{ i }]);
      expect((await counts(proxy)).fallbacks.max_client_conn ?? 0).toBe(0);
      expect((await counts(proxy)).logins).toBe(6);
      const third = await Promise.all([connectThrough(proxy.url(database))]);
      const refused = await connectThrough(proxy.url(database)).catch((error: unknown) => error);
      expect(refused).toMatchObject({ code: '53300' });
      await third[0]!.end();
    } finally {
      await kept.end();
    }
  });

  it('refuses to start without what the thread needs to log clients in alone', async () => {
    await expect(startTestProxy(db.url, { nativeLogin: true, pooling: poolingOptions({ authType: 'md5', authFile: '/dev/null' }) })).rejects.toThrow(/--native-login on needs --auth-type trust/);
    await expect(startTestProxy(db.url, { nativeLogin: true })).rejects.toThrow(/--pool-mode transaction/);
  });

  it('counts the clients that end before the thread reports them only in the totals, when no line is logged per client', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    // The test proxies log nothing: a native client gone before its login is reported is only counted.
    const proxy = await nativeProxy({ adminUsers: ['postgres'], adminDatabase: 'tandem' });
    const url = proxy.url(database);
    const brief = async () => Number(/^tandem_proxy_native_brief_clients_total (\d+)/m.exec((await proxy.metrics.text()).body)?.[1] ?? 0);
    await once(url, 'SELECT 1');
    const clients = 40;
    for (let i = 0; i < clients; i++) expect(await once(url, 'SELECT count(*)::int AS n FROM users')).toEqual([{ n: 2 }]);
    // Reported within the thread's report window (20 ms here).
    await expect.poll(async () => established(proxy)).toBe(clients + 1);
    expect(proxy.status().clients).toBe(0);
    expect((await counts(proxy)).logins).toBe(clients);
    // Most of them (each lives a few ms), yet every one counts below.
    expect(await brief()).toBeGreaterThan(0);
    expect(Object.values(proxy.status().databases[database]?.clients ?? {}).reduce((sum, used) => sum + used.queries, 0)).toBe(clients + 1);
    const admin = await connectThrough(proxy.url('tandem'));
    try {
      const stats = (await admin.query('SHOW STATS')).rows.find((row: { database: string }) => row.database === database);
      expect(stats).toMatchObject({ total_xact_count: String(clients + 1), total_query_count: String(clients + 1) });
      expect(Number(stats.total_received)).toBeGreaterThan(clients * 30);
      expect(Number(stats.total_sent)).toBeGreaterThan(clients * 30);
    } finally {
      await admin.end();
    }
  });

  it('reports every native client on its own when a line is logged per client', async () => {
    const database = databaseOf(db.url);
    const { logger, lines } = capturedLogger('info');
    const proxy = await nativeProxy({ logger });
    const url = proxy.url(database);
    for (let i = 0; i < 11; i++) await once(url, 'SELECT 1');
    await expect.poll(() => lines.filter((line) => line.msg === 'client disconnected').length).toBe(11);
    expect(lines.filter((line) => line.msg === 'client connected')).toHaveLength(11);
    expect((await counts(proxy)).logins).toBe(10);
    expect(/^tandem_proxy_native_brief_clients_total (\d+)/m.exec((await proxy.metrics.text()).body)?.[1]).toBe('0');
  });

  const pgbench = spawnSync('pgbench', ['--version']).status === 0;
  it.skipIf(!pgbench)('serves pgbench -C, a connection per transaction, with native logins', async () => {
    const init = spawnSync('pgbench', ['-i', '-s', '1', '-q', db.url], { encoding: 'utf8' });
    expect(init.status, init.stderr).toBe(0);
    const proxy = await nativeProxy({ pooling: poolingOptions({ settings: { poolSize: 4 } }) });
    const { stdout } = await run('pgbench', ['-n', '-S', '-C', '-c', '4', '-j', '2', '-t', '50', proxy.url(databaseOf(db.url))]);
    expect(stdout).toMatch(/number of transactions actually processed: 200\/200/);
    const { logins, fallbacks } = await counts(proxy);
    // pgbench's connections all send one startup packet: the first (and any racing it before the
    // thread was taught) are JavaScript's; pgbench's own first connection makes one more.
    expect(logins + (fallbacks.unlearned ?? 0)).toBe(201);
    expect(logins).toBeGreaterThanOrEqual(195);
    await expect.poll(() => proxy.status().clients).toBe(0);
  });
});
