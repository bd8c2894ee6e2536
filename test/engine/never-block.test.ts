import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, tandem } from '../support/migrations.js';
import { waitFor } from '../support/spawn.js';

/**
 * While another session holds a lock that conflicts with tandem's DDL, tandem's waiting request must
 * not hold the application up (PostgreSQL queues later requests behind a waiting ACCESS EXCLUSIVE
 * request): each attempt gives up after lock_timeout. An application query may wait about that long,
 * never for as long as the blocking session holds its lock.
 */
describe('never block the app', () => {
  const db = usePostgres();
  const lockTimeoutMs = 200;
  const holdMs = 4000;
  // Generous against a slow machine, and still far below the time the lock is held.
  const allowedWaitMs = lockTimeoutMs + 1500;

  async function appLoop(url: string, stop: () => boolean): Promise<{ queries: number; worstMs: number }> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    let worstMs = 0;
    let queries = 0;
    try {
      while (!stop()) {
        const started = performance.now();
        await client.query('SELECT count(*) FROM accounts WHERE id < 10');
        worstMs = Math.max(worstMs, performance.now() - started);
        queries++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    } finally {
      await client.end();
    }
    return { queries, worstMs };
  }

  async function holdLockDuring(url: string, command: string[]) {
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    await holder.query('BEGIN');
    // A long transaction that read the table: it holds ACCESS SHARE until it ends.
    await holder.query('SELECT * FROM accounts WHERE id = 1 FOR UPDATE');
    let done = false;
    const app = appLoop(url, () => done);
    const migration = tandem(url, ['--lock-timeout', String(lockTimeoutMs), '--lock-retries', '100', ...command]);
    // (Another session: inside a transaction, pg_stat_activity shows one frozen snapshot.)
    const observer = new pg.Client({ connectionString: url });
    await observer.connect();
    await waitFor(
      async () => {
        const { rows } = await observer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tandem' AND wait_event_type = 'Lock'`);
        return rows[0].n > 0 ? true : undefined;
      },
      20_000,
      'tandem to wait for the lock',
    );
    await observer.end();
    await new Promise((resolve) => setTimeout(resolve, holdMs));
    await holder.query('COMMIT');
    await holder.end();
    const result = await migration;
    done = true;
    return { result, app: await app };
  }

  it('start and complete wait for a conflicting lock without stalling the application, then finish', async () => {
    await db.query(`CREATE TABLE accounts (id int PRIMARY KEY, owner text); INSERT INTO accounts SELECT g, 'o' || g FROM generate_series(1, 1000) g;`);
    const file = await migrationFile('01_owner', {
      operations: [
        { rename_column: { table: 'accounts', from: 'owner', to: 'holder' } },
        { alter_column: { table: 'accounts', column: 'holder', nullable: false, up: "coalesce(owner, '?')", down: 'holder' } },
      ],
    });

    const started = await holdLockDuring(db.url, ['start', file]);
    ok(started.result);
    expect(started.result.stderr).toBe('');
    expect(started.app.queries).toBeGreaterThan(20);
    expect(started.app.worstMs).toBeLessThan(allowedWaitMs);

    const completed = await holdLockDuring(db.url, ['complete']);
    ok(completed.result);
    expect(completed.app.queries).toBeGreaterThan(20);
    expect(completed.app.worstMs).toBeLessThan(allowedWaitMs);
    const { rows } = await db.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'accounts' ORDER BY ordinal_position`);
    expect(rows.map((r) => r.column_name)).toEqual(['id', 'holder']);
  });
});
