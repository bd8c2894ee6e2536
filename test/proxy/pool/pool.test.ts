/**
 * Pools of real server connections (RawServer, trust login to the test server): sizing, waiting,
 * the reserve, the database limit, cleaning a returned connection, timeouts, retirement and PAUSE.
 * Timeouts are set small so that tests reach them; no test asserts how long anything took.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { usePostgres } from '../../support/harness.js';
import { DEFAULT_POOL_SETTINGS, PoolError, Pools, type Lease, type PoolKey, type PoolSettings } from '../../../src/proxy/pool/pool.js';
import { RawServer } from './support.js';

const db = usePostgres();
const root = fileURLToPath(new URL('../../..', import.meta.url));

const running: Array<Pools<RawServer>> = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((pools) => pools.close()));
});

function keyOf(version = ''): PoolKey {
  return { database: decodeURIComponent(new URL(db.url).pathname.slice(1)), user: 'postgres', version };
}

function pools(settings: Partial<PoolSettings> = {}, waits: number[] = []) {
  const opened: RawServer[] = [];
  const created = new Pools<RawServer>(
    async (key) => {
      const url = new URL(db.url);
      url.pathname = `/${encodeURIComponent(key.database)}`;
      const server = await RawServer.open(url.toString());
      opened.push(server);
      return server;
    },
    { ...DEFAULT_POOL_SETTINGS, serverIdleTimeoutMs: 0, serverLifetimeMs: 0, queryWaitTimeoutMs: 0, ...settings },
    { onWait: (_key, ms) => waits.push(ms) },
  );
  running.push(created);
  return Object.assign(created, { opened });
}

function statsOf(p: Pools<RawServer>, key = keyOf()) {
  return p.stats().find((s) => s.version === key.version && s.database === key.database);
}

/**
 * Keeps the pools' periodic maintenance (setInterval) from running in this test, so that what the test
 * sees is done by the release it makes, not by a maintenance pass a second later.
 */
function withoutMaintenance() {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  onTestFinished(() => {
    vi.useRealTimers();
  });
}

/** A promise's outcome so far, without waiting for it. */
function track<T>(promise: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

describe('Pools', () => {
  it('lends up to pool_size connections, reuses returned ones and serves waiters first come, first served', async () => {
    const waits: number[] = [];
    const p = pools({ poolSize: 2 }, waits);
    const a = await p.acquire(keyOf());
    const b = await p.acquire(keyOf());
    expect(a.connection).not.toBe(b.connection);
    const order: string[] = [];
    const c = p.acquire(keyOf()).then((lease) => (order.push('c'), lease));
    const d = p.acquire(keyOf()).then((lease) => (order.push('d'), lease));
    await vi.waitFor(() => expect(statsOf(p)).toMatchObject({ active: 2, idle: 0, waitingClients: 2 }));
    expect(statsOf(p)!.maxWaitMs).toBeGreaterThanOrEqual(0);
    a.release();
    const third = await c;
    expect(third.connection).toBe(a.connection);
    b.release();
    const fourth = await d;
    expect(fourth.connection).toBe(b.connection);
    expect(order).toEqual(['c', 'd']);
    expect(p.opened).toHaveLength(2);
    third.release();
    fourth.release();
    await vi.waitFor(() => expect(statsOf(p)).toMatchObject({ active: 0, idle: 2, waitingClients: 0, leases: 4, opened: 2, closed: 0 }));
    expect(waits).toHaveLength(4);
    expect(p.servers().map((s) => s.state)).toEqual(['idle', 'idle']);
  });

  it('fails a client that waited past query_wait_timeout with a typed error, and one whose client went away', async () => {
    // The wait includes opening a connection, so the first lease needs some room on a loaded machine.
    const p = pools({ poolSize: 1, queryWaitTimeoutMs: 1_500 });
    const held = await p.acquire(keyOf());
    const timedOut = await p.acquire(keyOf()).catch((error: unknown) => error);
    expect(timedOut).toBeInstanceOf(PoolError);
    expect(timedOut).toMatchObject({ reason: 'query_wait_timeout', code: '08P01' });
    expect((timedOut as Error).message).toMatch(/query_wait_timeout \(1500 ms\)/);

    held.release();

    const patient = pools({ poolSize: 1 });
    const busy = await patient.acquire(keyOf());
    const gone = new AbortController();
    const cancelled = patient.acquire(keyOf(), gone.signal).catch((error: unknown) => error);
    await vi.waitFor(() => expect(statsOf(patient)!.waitingClients).toBe(1));
    gone.abort();
    expect(await cancelled).toMatchObject({ reason: 'wait_cancelled' });
    expect(statsOf(patient)!.waitingClients).toBe(0);
    busy.release();
    await vi.waitFor(() => expect(statsOf(patient)).toMatchObject({ idle: 1, active: 0 }));
  });

  it('opens a reserve connection only for a client that waited reserve_pool_timeout, and no more than the reserve', async () => {
    const p = pools({ poolSize: 1, reservePoolSize: 1, reservePoolTimeoutMs: 30 });
    const first = await p.acquire(keyOf());
    const second = track(p.acquire(keyOf()));
    expect(statsOf(p)).toMatchObject({ opening: 0, waitingClients: 1 });
    await vi.waitFor(() => expect(second.settled).toBe(true));
    expect((second.value as Lease<RawServer>).connection).not.toBe(first.connection);
    const third = track(p.acquire(keyOf()));
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(third.settled).toBe(false);
    expect(p.opened).toHaveLength(2);
    first.release();
    await vi.waitFor(() => expect(third.settled).toBe(true));
    (second.value as Lease<RawServer>).release();
    (third.value as Lease<RawServer>).release();
  });

  it('keeps the connections of a database under max_db_connections, taking an idle one from another pool', async () => {
    withoutMaintenance();
    const p = pools({ poolSize: 5, maxDbConnections: 2 });
    const old = keyOf('01_old');
    const current = keyOf('02_new');
    const a = await p.acquire(old);
    const b = await p.acquire(old);
    const waiting = track(p.acquire(current));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(waiting.settled).toBe(false);
    a.release();
    // The idle connection of the other pool is closed to make room.
    await vi.waitFor(() => expect(waiting.settled).toBe(true));
    expect(statsOf(p, old)).toMatchObject({ active: 1, idle: 0, closed: 1 });
    expect(statsOf(p, current)).toMatchObject({ active: 1 });
    expect(p.opened.filter((s) => !s.closed)).toHaveLength(2);
    b.release();
    (waiting.value as Lease<RawServer>).release();
  });

  it('keeps the connections of a user under max_user_connections across its pools, while another user opens', async () => {
    withoutMaintenance();
    const p = pools({ poolSize: 5, maxUserConnections: 2 });
    const old = keyOf('01_old');
    const current = keyOf('02_new');
    const a = await p.acquire(old);
    const b = await p.acquire(current);
    const waiting = track(p.acquire(current));
    const stranger = await p.acquire({ ...current, user: 'someone_else' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(waiting.settled).toBe(false);
    expect(p.userConnections()).toEqual(expect.arrayContaining([{ user: 'postgres', connections: 2 }, { user: 'someone_else', connections: 1 }]));
    a.release();
    // The idle connection of the user's other pool is closed to make room.
    await vi.waitFor(() => expect(waiting.settled).toBe(true));
    expect(statsOf(p, old)).toMatchObject({ active: 0, idle: 0, closed: 1 });
    b.release();
    stranger.release();
    (waiting.value as Lease<RawServer>).release();
  });

  it('takes in a connection opened outside it only while it has room (pool_size, max_db_connections), and lends it', async () => {
    const p = pools({ poolSize: 1 });
    const outside = await RawServer.open(db.url);
    expect(p.adopt(keyOf(), outside)).toBe(true);
    expect(statsOf(p)).toMatchObject({ idle: 1, opened: 1 });
    const lease = await p.acquire(keyOf());
    expect(lease.connection).toBe(outside);
    expect(p.opened).toHaveLength(0);
    const extra = await RawServer.open(db.url);
    expect(p.adopt(keyOf(), extra)).toBe(false);
    extra.close();
    lease.release();

    const limited = pools({ poolSize: 5, maxDbConnections: 1 });
    const first = await RawServer.open(db.url);
    expect(limited.adopt(keyOf('01_old'), first)).toBe(true);
    const second = await RawServer.open(db.url);
    expect(limited.adopt(keyOf('02_new'), second)).toBe(false);
    second.close();

    // max_user_connections counts an adopted connection as one of the user's.
    const perUser = pools({ poolSize: 5, maxUserConnections: 1 });
    const mine = await RawServer.open(db.url);
    expect(perUser.adopt(keyOf('01_old'), mine)).toBe(true);
    expect(perUser.userConnections()).toEqual([{ user: 'postgres', connections: 1 }]);
    const more = await RawServer.open(db.url);
    expect(perUser.adopt(keyOf('02_new'), more)).toBe(false);
    more.close();
  });

  it('never lends a connection left in a transaction: it is rolled back first, or closed when broken', async () => {
    const p = pools({ poolSize: 1 });
    const first = await p.acquire(keyOf());
    await first.connection.run('BEGIN');
    await first.connection.run('CREATE TABLE left_behind (a int)');
    expect(first.connection.transactionStatus).toBe('T');
    first.release();
    const second = await p.acquire(keyOf());
    expect(second.connection).toBe(first.connection);
    expect(second.connection.transactionStatus).toBe('I');
    expect(await second.connection.query(`SELECT count(*) FROM pg_class WHERE relname = 'left_behind'`)).toEqual(['0']);

    // A failed transaction ('E') too.
    await second.connection.run('BEGIN');
    await expect(second.connection.run('SELECT 1/0')).rejects.toThrow(/division by zero/);
    expect(second.connection.transactionStatus).toBe('E');
    second.release();
    const third = await p.acquire(keyOf());
    expect(third.connection.transactionStatus).toBe('I');
    expect(await third.connection.query('SELECT 1')).toEqual(['1']);

    // A client that died mid-query leaves the protocol state unknown: the connection is closed.
    third.release({ broken: true });
    const fourth = await p.acquire(keyOf());
    expect(fourth.connection).not.toBe(third.connection);
    expect(third.connection.closed).toBe(true);
    fourth.release();
  });

  it('runs the reset query when a session-mode client gives its connection back', async () => {
    for (const serverResetQuery of ['DISCARD ALL', 'RESET ALL']) {
      const p = pools({ poolSize: 1, serverResetQuery });
      const lease = await p.acquire(keyOf());
      await lease.connection.run(`SET work_mem = '1MB'`);
      lease.release({ reset: true });
      const next = await p.acquire(keyOf());
      expect(next.connection).toBe(lease.connection);
      expect(await next.connection.query('SHOW work_mem')).toEqual(['4MB']);
      next.release();
    }
    // Transaction mode gives connections back without a reset.
    const p = pools({ poolSize: 1 });
    const lease = await p.acquire(keyOf());
    await lease.connection.run(`SET work_mem = '1MB'`);
    lease.release();
    const next = await p.acquire(keyOf());
    expect(await next.connection.query('SHOW work_mem')).toEqual(['1MB']);
    next.release();
  });

  it('closes a connection older than server_lifetime when it comes back, and idle ones past server_idle_timeout down to min_pool_size', async () => {
    const aged = pools({ poolSize: 1, serverLifetimeMs: 1 });
    const lease = await aged.acquire(keyOf());
    await new Promise((resolve) => setTimeout(resolve, 5));
    lease.release();
    const next = await aged.acquire(keyOf());
    expect(next.connection).not.toBe(lease.connection);
    expect(lease.connection.closed).toBe(true);
    next.release();

    const p = pools({ poolSize: 3, minPoolSize: 1, serverIdleTimeoutMs: 20 });
    const leases = await Promise.all([p.acquire(keyOf()), p.acquire(keyOf()), p.acquire(keyOf())]);
    for (const one of leases) one.release();
    await vi.waitFor(() => expect(statsOf(p)).toMatchObject({ idle: 1, active: 0, closed: 2 }), { timeout: 10_000 });
  });

  it('opens min_pool_size connections before any client asks', async () => {
    const p = pools({ poolSize: 4, minPoolSize: 2 });
    const lease = await p.acquire(keyOf());
    await vi.waitFor(() => expect(statsOf(p)).toMatchObject({ active: 1, idle: 1, opened: 2 }));
    lease.release();
  });

  it('retires a pool: waiting clients fail, idle connections close now and lent ones when they come back', async () => {
    const p = pools({ poolSize: 2 });
    const [held, spare] = await Promise.all([p.acquire(keyOf()), p.acquire(keyOf())]);
    spare.release();
    await vi.waitFor(() => expect(statsOf(p)!.idle).toBe(1));
    const other = await p.acquire(keyOf());
    const waiting = p.acquire(keyOf()).catch((error: unknown) => error);
    await vi.waitFor(() => expect(statsOf(p)!.waitingClients).toBe(1));
    const retired = track(p.retire(keyOf()));
    expect(await waiting).toMatchObject({ reason: 'pool_closed', code: '57P01' });
    await expect(p.acquire(keyOf())).rejects.toMatchObject({ reason: 'pool_closed' });
    other.release();
    await vi.waitFor(() => expect(other.connection.closed).toBe(true));
    expect(retired.settled).toBe(false);
    held.release();
    await vi.waitFor(() => expect(retired.settled).toBe(true));
    expect(held.connection.closed).toBe(true);
    expect(statsOf(p)).toBeUndefined();
  });

  it('PAUSE waits until every connection of the database is back, closes them, and RESUME serves the clients that waited', async () => {
    const p = pools({ poolSize: 2 });
    const held = await p.acquire(keyOf());
    const paused = track(p.pause(keyOf().database));
    const waiting = track(p.acquire(keyOf()));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(paused.settled).toBe(false);
    expect(waiting.settled).toBe(false);
    held.release();
    await vi.waitFor(() => expect(paused.settled).toBe(true));
    expect(held.connection.closed).toBe(true);
    expect(statsOf(p)).toMatchObject({ active: 0, idle: 0, waitingClients: 1, paused: true });
    expect(waiting.settled).toBe(false);
    p.resume(keyOf().database);
    await vi.waitFor(() => expect(waiting.settled).toBe(true));
    expect(await (waiting.value as Lease<RawServer>).connection.query('SELECT 1')).toEqual(['1']);
    (waiting.value as Lease<RawServer>).release();
  });

  it('fails a waiting client with the cause when no server connection can be opened', async () => {
    const p = pools({ poolSize: 1 });
    const error = await p.acquire({ database: 'no_such_database', user: 'postgres', version: '' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'server_connect_failed', code: '08006' });
    expect((error as Error).message).toMatch(/no_such_database/);
  });
});

describe('Pools timers', () => {
  it('never keep the process alive: a client waiting with long timeouts lets a process with nothing else to do exit', async () => {
    const script = `
      import { DEFAULT_POOL_SETTINGS, Pools } from './src/proxy/pool/pool.ts';
      const pools = new Pools(() => new Promise(() => {}), { ...DEFAULT_POOL_SETTINGS, reservePoolSize: 1, queryWaitTimeoutMs: 600000, reservePoolTimeoutMs: 600000 });
      void pools.acquire({ database: 'app', user: 'u', version: '' }).catch(() => {});
      console.log('waiting', pools.stats()[0].waitingClients);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    // Should the timers hold it, the test fails by its timeout and must not leave the process behind.
    onTestFinished(() => void child.kill());
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(out.trim()).toBe('waiting 1');
    expect(code).toBe(0);
  });
});
