import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { rollingDeploy } from '../../examples/rolling-deploy/scenario.js';
import { silentLogger } from '../../src/observe/logger.js';
import { startProxy, type Proxy } from '../../src/proxy/server.js';
import { usePostgres } from '../support/harness.js';
import { freePort } from '../support/postgres.js';
import { migrationFile, ok, tandem } from '../support/migrations.js';
import { waitFor } from '../support/spawn.js';

describe('a rolling deploy, end to end', () => {
  const db = usePostgres();

  it('two app versions through the proxy, a real backfill, a drained complete: no errors, nothing lost', async () => {
    const report = await rollingDeploy({ postgresUrl: db.url, proxyPort: await freePort(), rows: 100_000, phaseMs: 2000, logger: silentLogger(), say: () => {} });
    expect(report.v1.firstErrors).toEqual([]);
    expect(report.v2.firstErrors).toEqual([]);
    expect(report.v1.errors + report.v2.errors).toBe(0);
    expect(report.v1.queries).toBeGreaterThan(50);
    expect(report.v2.queries).toBeGreaterThan(50);
    expect(report.consistencyChecks).toBeGreaterThan(0);
    expect(report.disagreements).toBe(0);
    expect(report.wrongValues).toBe(0);
    expect(report.finalRows).toBe(report.expectedRows);
    expect(report.finalColumns).toEqual(['id', 'name', 'created_at', 'email_address']);
    expect(report.constraints).toEqual(["CHECK ((email_address ~~ '%@%'::text))", 'PRIMARY KEY (id)', 'email_address NOT NULL']);
  });

  describe('safe contract', () => {
    async function setup(): Promise<{ proxy: Proxy; port: number; url: (v: string) => string }> {
      await db.query(`CREATE TABLE users (id int PRIMARY KEY, email text)`);
      ok(await tandem(db.url, ['start', await migrationFile('01_base', { operations: [{ create_index: { name: 'users_email', table: 'users', columns: [{ column: 'email' }] } }] }), '--complete']));
      ok(await tandem(db.url, ['start', await migrationFile('02_rename', { operations: [{ rename_column: { table: 'users', from: 'email', to: 'email_address' } }] })]));
      const port = await freePort();
      const proxy = await startProxy({
        listen: { host: '127.0.0.1', port },
        postgresUrl: db.url,
        defaultVersion: 'latest',
        maxClientConn: 50,
        shutdownGraceMs: 500,
        clientLoginTimeoutMs: 5000,
        serverConnectTimeoutMs: 5000,
        heartbeatIntervalMs: 200,
        heartbeatExpireMs: 60_000,
        versionCacheTtlMs: 1000,
        schema: 'public',
        stateSchema: 'tandem',
        logger: silentLogger(),
      });
      const database = new URL(db.url).pathname.slice(1);
      return { proxy, port, url: (v) => `postgres://postgres@127.0.0.1:${port}/${database}@${v}` };
    }

    async function heartbeatShows(version: string, clients: number) {
      await waitFor(async () => {
        const { rows } = await db.query(`SELECT coalesce(sum((versions -> $1 ->> 'clients')::int), 0)::int AS n FROM tandem.proxies`, [version]);
        return rows[0].n === clients ? true : undefined;
      }, 10_000, `${clients} clients on ${version} in the heartbeats`);
    }

    it('complete refuses while the old version has clients, names them, and waits for them with --wait-for-drain', async () => {
      const { proxy, url } = await setup();
      const old = new pg.Client({ connectionString: url('01_base') });
      await old.connect();
      await old.query('SELECT email FROM users');
      await heartbeatShows('public_01_base', 1);
      try {
        const refused = await tandem(db.url, ['complete']);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toMatch(/version public_01_base still has 1 live client: proxy \S+ pid \d+ \(127\.0\.0\.1:\d+\): 1 client, last query 20\d\d-/);
        expect(refused.stderr).toContain('--wait-for-drain');
        const status = await tandem(db.url, ['status']);
        expect(status.stdout).toMatch(/public_01_base\s+previous\s+01_base \(complete\) — clients: 1/);
        expect(status.stdout).toContain('tandem complete would refuse now');

        const waiting = tandem(db.url, ['complete', '--wait-for-drain', '20s']);
        await new Promise((r) => setTimeout(r, 600));
        await old.end();
        const drained = await waiting;
        ok(drained);
        expect(drained.stderr).toContain('waiting for public_01_base to drain: 1 client left');
      } finally {
        await old.end().catch(() => {});
        await proxy.shutdown(0);
      }
    });

    it('a version no live proxy reports counts as unknown, not safe; --force retires it; its clients get a clear error', async () => {
      const { proxy, url } = await setup();
      const old = new pg.Client({ connectionString: url('01_base') });
      old.on('error', () => {});
      await old.connect();
      await heartbeatShows('public_01_base', 1);
      try {
        // Silence: the only proxy's heartbeat is older than --stale-after. (A heartbeat can commit
        // within that millisecond of the check; complete then refuses without changing anything, so
        // the check is simply asked again.)
        let unknown = await tandem(db.url, ['complete', '--stale-after', '1ms']);
        for (let attempt = 1; attempt < 5 && unknown.stderr.includes('1 live client'); attempt++) {
          unknown = await tandem(db.url, ['complete', '--stale-after', '1ms']);
        }
        expect(unknown.code).toBe(1);
        expect(unknown.stderr).toMatch(/version public_01_base still has an unknown number of clients \(no live proxy reports it\): no proxy has sent a heartbeat in the last 0 s/);

        ok(await tandem(db.url, ['complete', '--force']));
        // complete waited for the proxy's next heartbeat, which follows its re-read of the versions.
        const error = await old.query('SELECT email FROM users').then(
          () => undefined,
          (e: Error) => e,
        );
        expect(error?.message).toMatch(/version "?public_01_base"? was retired by migration "?02_rename"?.*reconnect/);
        const fresh = new pg.Client({ connectionString: url('latest') });
        await fresh.connect();
        expect((await fresh.query('SELECT email_address FROM users')).rows).toEqual([]);
        await fresh.end();
      } finally {
        await old.end().catch(() => {});
        await proxy.shutdown(0);
      }
    });

    it('three versions at once through the proxy (a migration stacked on the active one): each write read through the others, complete retires them oldest first, each only once it has no clients', async () => {
      const { proxy, url } = await setup();
      await db.query('CREATE TABLE orders (id int PRIMARY KEY, total int)');
      ok(await tandem(db.url, ['start', await migrationFile('03_orders', { operations: [{ alter_column: { table: 'orders', column: 'total', type: 'bigint', up: 'total * 100', down: '(total / 100)::int' } }] })]));
      const connect = async (version: string) => {
        const client = new pg.Client({ connectionString: url(version) });
        client.on('error', () => {});
        await client.connect();
        return client;
      };
      const [v1, v2, v3, previous] = await Promise.all([connect('01_base'), connect('02_rename'), connect('latest'), connect('previous')]);
      const rows = async (client: pg.Client, sql: string) => (await client.query(sql)).rows;
      try {
        await v3.query(`INSERT INTO users (id, email_address) VALUES (1, 'three@example.com')`);
        expect(await rows(v1, 'SELECT email FROM users')).toEqual([{ email: 'three@example.com' }]);
        await v1.query('INSERT INTO orders (id, total) VALUES (1, 5)');
        expect(await rows(v3, 'SELECT total FROM orders')).toEqual([{ total: '500' }]);
        expect(await rows(v2, 'SELECT total FROM orders')).toEqual([{ total: 5 }]);
        await v3.query('UPDATE orders SET total = 700 WHERE id = 1');
        expect(await rows(previous, 'SELECT email_address, (SELECT total FROM orders) AS total FROM users')).toEqual([{ email_address: 'three@example.com', total: 7 }]);
        await heartbeatShows('public_01_base', 1);

        const refused = await tandem(db.url, ['complete']);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain('version public_01_base still has 1 live client');
        await v1.end();
        await heartbeatShows('public_01_base', 0);
        expect(ok(await tandem(db.url, ['complete'])).stdout).toContain('02_rename');
        // 02 is now the oldest version; it still has two clients (02_rename and previous).
        await heartbeatShows('public_02_rename', 2);
        const second = await tandem(db.url, ['complete']);
        expect(second.code).toBe(1);
        expect(second.stderr).toContain('version public_02_rename still has 2 live clients');
        await v2.query('UPDATE orders SET total = 9 WHERE id = 1');
        expect(await rows(v3, 'SELECT u.email_address, o.total FROM users u, orders o')).toEqual([{ email_address: 'three@example.com', total: '900' }]);
        await Promise.all([v2.end(), previous.end()]);
        await heartbeatShows('public_02_rename', 0);
        expect(ok(await tandem(db.url, ['complete'])).stdout).toContain('03_orders');
        expect(await rows(v3, 'SELECT u.email_address, o.total FROM users u, orders o')).toEqual([{ email_address: 'three@example.com', total: '900' }]);
      } finally {
        await Promise.all([v1, v2, v3, previous].map((c) => c.end().catch(() => {})));
        await proxy.shutdown(0);
      }
    });

    it('once proxies have served the schema, their silence is not taken for "no clients"', async () => {
      const { proxy } = await setup();
      await waitFor(async () => ((await db.query(`SELECT count(*)::int AS n FROM tandem.proxies`)).rows[0].n > 0 ? true : undefined), 10_000, 'a heartbeat');
      // A clean shutdown removes the proxy's row; the state still remembers that proxies are in use.
      await proxy.shutdown(0);
      expect((await db.query(`SELECT count(*)::int AS n FROM tandem.proxies`)).rows[0].n).toBe(0);
      const refused = await tandem(db.url, ['complete']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('still has an unknown number of clients');
      expect(refused.stderr).toContain('(proxies have served this schema before)');
      ok(await tandem(db.url, ['complete', '--force']));
    });
  });
});
