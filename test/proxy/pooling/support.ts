/** Pooling settings for tests: PgBouncer's defaults, trust authentication, transaction mode, unless overridden. */
import { DEFAULT_POOL_SETTINGS } from '../../../src/proxy/pool/pool.js';
import type { PoolingOptions } from '../../../src/proxy/config.js';
import { expect } from 'vitest';
import pg from 'pg';

export function poolingOptions(overrides: Partial<Omit<PoolingOptions, 'settings'>> & { settings?: Partial<PoolingOptions['settings']> } = {}): PoolingOptions {
  return {
    mode: 'transaction',
    idleTransactionTimeoutMs: 0,
    maxPreparedStatements: 200,
    authType: 'trust',
    ...overrides,
    settings: { ...DEFAULT_POOL_SETTINGS, ...overrides.settings },
  };
}

interface Queryable {
  query(sql: string, values?: unknown[]): Promise<{ rows: { n: number }[] }>;
}

/** Waits until `sql` runs on some backend of the test database (a cancel sent earlier could miss it). */
export async function untilRunning(db: Queryable, sql: string): Promise<void> {
  await expect
    .poll(async () => (await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1 AND state = 'active'`, [sql])).rows[0]!.n, { timeout: 10_000 })
    .toBe(1);
}

/**
 * Runs `SELECT pg_sleep(30)` on `sleeper` and, once the server runs it, cancels it with node-postgres's
 * own cancel through `url` (a new connection sending CancelRequest with the client's key): the error
 * the query got.
 */
export async function sleepCancelled(db: Queryable, sleeper: pg.Client, url: string): Promise<unknown> {
  const sleep = new pg.Query('SELECT pg_sleep(30)');
  const failed = new Promise<unknown>((resolve) => sleep.on('error', resolve));
  sleeper.query(sleep);
  await untilRunning(db, 'SELECT pg_sleep(30)');
  const canceller = new pg.Client({ connectionString: url }) as unknown as { cancel(client: unknown, query: unknown): void };
  canceller.cancel(sleeper, sleep);
  return failed;
}
