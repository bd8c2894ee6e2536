/**
 * The native thread's pools are freed: a retired version's, and those with no session for
 * --server-idle-timeout (clients that each bring their own application_name). Real PostgreSQL and
 * real clients (node-postgres); how many pools the thread has is read from /metrics
 * (tandem_proxy_native_pools), and the wait histogram must never go backwards when a pool goes.
 */
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { usePostgres } from '../../support/harness.js';
import { seededRandom } from '../../support/random.js';
import { selectForwarder, type NativeForwarder } from '../../../src/proxy/native.js';
import { connectThrough, createUsersTable, databaseOf, startTestProxy, type TestProxy } from '../support.js';
import { migrationFile, ok, tandem } from '../../support/migrations.js';
import { poolingOptions } from './support.js';

const db = usePostgres();
const forwarder: NativeForwarder | undefined = selectForwarder('auto').forwarder;

async function metric(proxy: TestProxy, pattern: string): Promise<number> {
  const body = (await proxy.metrics.text()).body;
  const value = new RegExp(`^${pattern} (\\d+)`, 'm').exec(body)?.[1];
  if (value === undefined) throw new Error(`no ${pattern} in /metrics`);
  return Number(value);
}

const nativePools = (proxy: TestProxy) => metric(proxy, 'tandem_proxy_native_pools');
const waitCount = (proxy: TestProxy, database: string, version: string) => metric(proxy, `tandem_proxy_pool_wait_seconds_count\\{database="${database}",version="${version}"\\}`);

describe.skipIf(!forwarder)('freeing the native thread\'s pools', () => {
  it('frees the thread pools of the version tandem complete retired once its clients are gone, and keeps its waits counted', async () => {
    await db.query(`CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@example.com')`);
    ok(await tandem(db.url, ['start', await migrationFile('01_base', { operations: [{ create_index: { name: 'users_email', table: 'users', columns: [{ column: 'email' }] } }] }), '--complete']));
    ok(await tandem(db.url, ['start', await migrationFile('02_rename', { operations: [{ rename_column: { table: 'users', from: 'email', to: 'email_address' } }] })]));
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions(), heartbeatIntervalMs: 200, versionCacheTtlMs: 1000 });
    const old = [await connectThrough(proxy.url(`${database}@01_base`)), await connectThrough(proxy.url(`${database}@01_base`), { application_name: 'other' })];
    const current = await connectThrough(proxy.url(`${database}@02_rename`));
    for (const client of old) expect((await client.query('SELECT email FROM users WHERE id = 1')).rows[0].email).toBe('a@example.com');
    expect((await current.query('SELECT email_address FROM users WHERE id = 1')).rows[0].email_address).toBe('a@example.com');
    expect(await nativePools(proxy)).toBe(3);
    const oldWaits = await waitCount(proxy, database, 'public_01_base');
    expect(oldWaits).toBeGreaterThanOrEqual(2);

    // One old client is still connected: --force retires the version all the same.
    await old[1]!.end();
    ok(await tandem(db.url, ['complete', '--force']));
    expect(await old[0]!.query('SELECT email FROM users').catch((error: unknown) => error)).toMatchObject({ code: '57P01', message: expect.stringContaining('retired') });
    await expect.poll(() => nativePools(proxy), { timeout: 5_000 }).toBe(1);
    expect(await waitCount(proxy, database, 'public_01_base')).toBe(oldWaits);
    // The other version's pool goes on.
    expect((await current.query('SELECT email_address FROM users WHERE id = 1')).rows[0].email_address).toBe('a@example.com');
    expect(await nativePools(proxy)).toBe(1);
    await current.end();
  });

  it('frees the pools of 70 application_names once each has had no session for --server-idle-timeout, and a returning one gets a new pool', async () => {
    const database = databaseOf(db.url);
    const proxy = await startTestProxy(db.url, { pooling: poolingOptions({ settings: { poolSize: 2, serverIdleTimeoutMs: 1_000 } }) });
    let most = 0;
    for (let i = 0; i < 70; i++) {
      const client = await connectThrough(proxy.url(database), { application_name: `app-${i}` });
      expect((await client.query(`SELECT current_setting('application_name') AS app`)).rows[0].app).toBe(`app-${i}`);
      await client.end();
      most = Math.max(most, await nativePools(proxy));
    }
    expect(most).toBeGreaterThan(1);
    const waits = await waitCount(proxy, database, 'none');
    expect(waits).toBeGreaterThanOrEqual(70);
    await expect.poll(() => nativePools(proxy), { timeout: 10_000, interval: 200 }).toBe(0);
    // Freed pools' waits stay counted: the histogram never goes backwards.
    expect(await waitCount(proxy, database, 'none')).toBe(waits);
    const again = await connectThrough(proxy.url(database), { application_name: 'app-0' });
    expect((await again.query(`SELECT current_setting('application_name') AS app`)).rows[0].app).toBe('app-0');
    expect(await nativePools(proxy)).toBe(1);
    await again.end();
    expect(await waitCount(proxy, database, 'none')).toBeGreaterThan(waits);
  });

  it('serves clients that connect while their pool is being closed, natively logged in or not', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    // Pools close 100 ms after their last client left: clients come back before, around and after that moment.
    const proxy = await startTestProxy(db.url, { nativeLogin: true, pooling: poolingOptions({ settings: { poolSize: 2, serverIdleTimeoutMs: 100 } }) });
    const random = seededRandom(13);
    for (let round = 0; round < 60; round++) {
      await Promise.all(
        Array.from({ length: 1 + Math.floor(random() * 3) }, async () => {
          const client = new pg.Client({ connectionString: proxy.url(database), application_name: 'comes-and-goes' });
          await client.connect();
          const { rows } = await client.query('SELECT count(*)::int AS n FROM users');
          expect(rows[0].n).toBe(2);
          await client.end();
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, random() * 200));
    }
    // Both ways, many times: natively with what JavaScript taught, and by JavaScript after a close made the thread forget it.
    expect(await metric(proxy, 'tandem_proxy_native_logins_total')).toBeGreaterThan(5);
    expect(await metric(proxy, 'tandem_proxy_native_login_fallbacks_total\\{reason="unlearned"\\}')).toBeGreaterThan(10);
    await expect.poll(() => nativePools(proxy), { timeout: 5_000 }).toBe(0);
  });

  it('refuses a command naming a pool the thread freed, instead of touching freed memory', async () => {
    const figures = new Float64Array(8);
    let closed!: () => void;
    const gone = new Promise<void>((resolve) => (closed = resolve));
    const handle = forwarder!.createPool({ want: () => {}, returned: () => {}, closed }, figures, new Float64Array([0, 1]));
    forwarder!.drain(handle, true);
    forwarder!.closePool(handle);
    await gone;
    expect(() => forwarder!.drain(handle, false)).toThrow('the pool is closed');
    expect(() => forwarder!.closePool(handle)).toThrow('the pool is closed');
  });
});
