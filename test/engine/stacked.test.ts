/**
 * Stacked migrations: a migration started while another is active, on other tables (the same table:
 * stacked-same-table.test.ts). Three versions
 * live at once; writes through each read back, transformed, through the other two; complete goes
 * oldest first and rollback newest first; the end is the schema a one-at-a-time run leaves.
 */
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { usePostgres } from '../support/harness.js';
import { columnNames, migrationFile, migrationFolder, ok, schemaExists, start, tandem, versionClient } from '../support/migrations.js';
import { snapshotSchema } from '../support/schema-snapshot.js';
import { snapshot } from '../support/cases.js';
import { spawnCli } from '../support/spawn.js';

const SETUP = `CREATE TABLE users (id int PRIMARY KEY, email text, score int NOT NULL DEFAULT 0);
               CREATE TABLE orders (id int PRIMARY KEY, total int);
               CREATE TABLE teams (id int PRIMARY KEY, lead int REFERENCES users (id));
               INSERT INTO users SELECT g, 'u' || g || '@example.com', g FROM generate_series(1, 50) g;
               INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 50) g;`;

/** 02: users only. */
const USERS = [
  { rename_column: { table: 'users', from: 'email', to: 'mail' } },
  { alter_column: { table: 'users', column: 'score', type: 'bigint', up: 'score', down: 'score::int' } },
];
/** 03: orders only, with a type change both ways and a backfilled column (its `up` reads the old version's row). */
const ORDERS = [
  { alter_column: { table: 'orders', column: 'total', type: 'bigint', up: 'total * 100', down: '(total / 100)::int' } },
  { add_column: { table: 'orders', column: { name: 'note', type: 'text', nullable: true }, up: "'total ' || total" } },
];

describe('stacked migrations', () => {
  const db = usePostgres();

  async function clients() {
    const v1 = await versionClient(db.url, null);
    const v2 = await versionClient(db.url, 'public_02_users');
    const v3 = await versionClient(db.url, 'public_03_orders');
    return { v1, v2, v3, end: () => Promise.all([v1, v2, v3].map((c) => c.end())) };
  }

  const one = async (client: pg.Client, sql: string, values: unknown[] = []) => (await client.query(sql, values)).rows[0];

  it('serves three versions at once, each write read back through the other two, and completes oldest first to the schema a one-at-a-time run leaves', async () => {
    await db.query(SETUP);
    ok(await start(db.url, '02_users', USERS));
    const stacked = ok(await start(db.url, '03_orders', ORDERS));
    expect(stacked.stdout).toContain('03_orders: started');

    const status = JSON.parse(ok(await tandem(db.url, ['status', '--json'])).stdout);
    expect(status.activeMigrations.map((m: { name: string }) => m.name)).toEqual(['02_users', '03_orders']);
    expect(status.versions.map((v: { migration: string; role: string }) => [v.migration, v.role])).toEqual([
      ['03_orders', 'latest'],
      ['02_users', 'previous'],
    ]);
    expect(ok(await tandem(db.url, ['status'])).stdout).toContain('active migration: 03_orders (stacked on 02_users)');

    const admin = await db.client();
    // 03 sees users as 02 does, and orders its own way; 02 sees orders as they were.
    expect(await columnNames(admin, 'public_03_orders', 'users')).toEqual(['id', 'mail', 'score']);
    expect(await columnNames(admin, 'public_03_orders', 'orders')).toEqual(['id', 'total', 'note']);
    expect(await columnNames(admin, 'public_02_users', 'orders')).toEqual(['id', 'total']);
    expect(await columnNames(admin, 'public_03_orders', 'teams')).toEqual(['id', 'lead']);

    const { v1, v2, v3, end } = await clients();
    try {
      // users: 03 writes as 02 does, and 01 reads the old column.
      await v3.query(`UPDATE users SET mail = 'three@example.com', score = 5000000000 / 1000000 WHERE id = 1`);
      expect(await one(v1, 'SELECT email, score FROM users WHERE id = 1')).toEqual({ email: 'three@example.com', score: 5000 });
      expect(await one(v2, 'SELECT mail, score FROM users WHERE id = 1')).toEqual({ mail: 'three@example.com', score: '5000' });
      await v3.query(`INSERT INTO users (id, mail, score) VALUES (100, 'new3@example.com', 7)`);
      expect(await one(v1, 'SELECT email, score FROM users WHERE id = 100')).toEqual({ email: 'new3@example.com', score: 7 });
      await v1.query(`UPDATE users SET email = 'one@example.com' WHERE id = 2`);
      expect(await one(v3, 'SELECT mail FROM users WHERE id = 2')).toEqual({ mail: 'one@example.com' });
      expect(await one(v2, 'SELECT mail FROM users WHERE id = 2')).toEqual({ mail: 'one@example.com' });
      // orders: 01 and 02 are both the old version for 03's change.
      expect(await one(v3, 'SELECT total, note FROM orders WHERE id = 3')).toEqual({ total: '3000', note: 'total 30' });
      await v2.query('UPDATE orders SET total = 7 WHERE id = 3');
      expect(await one(v3, 'SELECT total, note FROM orders WHERE id = 3')).toEqual({ total: '700', note: 'total 7' });
      await v3.query('UPDATE orders SET total = 900 WHERE id = 4');
      expect(await one(v1, 'SELECT total FROM orders WHERE id = 4')).toEqual({ total: 9 });
      expect(await one(v2, 'SELECT total FROM orders WHERE id = 4')).toEqual({ total: 9 });
      await v1.query('INSERT INTO orders (id, total) VALUES (100, 2)');
      expect(await one(v3, 'SELECT total, note FROM orders WHERE id = 100')).toEqual({ total: '200', note: 'total 2' });
    } finally {
      await end();
    }

    // complete retires the oldest version first: 02's complete drops 01's schema, 03 stays active.
    const first = ok(await tandem(db.url, ['complete']));
    expect(first.stdout).toContain('02_users');
    expect((await tandem(db.url, ['status', '--json'])).stdout).toContain('"03_orders"');
    const w2 = await versionClient(db.url, 'public_02_users');
    const w3 = await versionClient(db.url, 'public_03_orders');
    try {
      // 03's views of users now stand on the swapped-in columns.
      await w3.query(`UPDATE users SET mail = 'after@example.com', score = 11 WHERE id = 3`);
      expect(await one(w2, 'SELECT mail, score FROM users WHERE id = 3')).toEqual({ mail: 'after@example.com', score: '11' });
      await w2.query('UPDATE orders SET total = 5 WHERE id = 5');
      expect(await one(w3, 'SELECT total, note FROM orders WHERE id = 5')).toEqual({ total: '500', note: 'total 5' });
    } finally {
      await Promise.all([w2.end(), w3.end()]);
    }
    ok(await tandem(db.url, ['complete']));
    expect(await schemaExists(admin, 'public_02_users')).toBe(false);
    expect(await schemaExists(admin, 'public_03_orders')).toBe(true);
    expect(await columnNames(admin, 'public', 'orders')).toEqual(expect.arrayContaining(['id', 'total', 'note']));

    // The same two migrations one at a time, on a database of their own: the same schema.
    await admin.query('CREATE DATABASE one_at_a_time');
    const url = new URL(db.url);
    url.pathname = '/one_at_a_time';
    const sequential = await versionClient(url.toString(), null);
    try {
      await sequential.query(SETUP);
      ok(await tandem(url.toString(), ['start', await migrationFile('02_users', { operations: USERS }), '--complete']));
      ok(await tandem(url.toString(), ['start', await migrationFile('03_orders', { operations: ORDERS }), '--complete']));
      expect(await snapshotSchema(admin, 'public')).toEqual(await snapshotSchema(sequential, 'public'));
    } finally {
      await sequential.end();
    }
  });

  it('refuses what cannot be stacked, naming the migration to complete first, and changes nothing', async () => {
    // 02 rebuilds this unique constraint's index on its shadow of score under a temporary name, to
    // become the constraint at its complete; another table's foreign key points at it.
    await db.query(SETUP + 'ALTER TABLE users ADD CONSTRAINT score_key UNIQUE (score); CREATE TABLE ranks (score int REFERENCES users (score));');
    ok(await start(db.url, '02_users', USERS));
    const admin = await db.client();
    const before = await snapshot(admin);
    const records = async () => (await admin.query('SELECT count(*)::int AS n FROM tandem.migrations')).rows[0].n;
    const recordsBefore = await records();
    const refused = async (name: string, operations: object[], extra: string[] = []) => {
      const result = await start(db.url, name, operations, extra);
      expect(result.code, result.stdout).toBe(1);
      expect(await snapshot(admin)).toEqual(before);
      expect(await records()).toBe(recordsBefore);
      return result.stderr;
    };

    // Stacking on users is allowed, and changing again a column 02 changes, but not one whose unique
    // constraint 02 has not finished moving while another table's foreign key depends on it.
    const sameColumn = await refused('03_same', [{ alter_column: { table: 'users', column: 'score', type: 'numeric', up: 'score', down: 'score::bigint' } }]);
    expect(sameColumn).toMatch(/03_same\.json: operation 0 \(alter_column\): this migration changes column "score" of table "users", which active migration "02_users" has not finished changing/);
    expect(sameColumn).toContain('complete "02_users" first');
    const rawSql = await refused('03_sql', [{ sql: { up: 'CREATE TABLE other (id int)' } }]);
    expect(rawSql).toContain('cannot start while migration "02_users" is active: this migration runs raw SQL');
    const atOnce = await refused('03_orders', ORDERS, ['--complete']);
    expect(atOnce).toContain('cannot start and complete at once while migration "02_users" is active');
    const one = await refused('03_orders', ORDERS, ['--max-active-migrations', '1']);
    expect(one).toContain('migration "02_users" is active');

    ok(await start(db.url, '03_orders', ORDERS));
    const full = await start(db.url, '04_more', [{ create_table: { name: 'more', columns: [{ name: 'id', type: 'int', pk: true }] } }], ['--max-active-migrations', '2']);
    expect(full.code).toBe(1);
    expect(full.stderr).toContain('migrations "02_users", "03_orders" are active, and --max-active-migrations 2 allows no more');
    expect(full.stderr).toContain('complete "02_users" first, or raise --max-active-migrations');
  });

  it('rolls back the newest migration first, giving the older one its triggers back, also after the older one completed', async () => {
    await db.query(SETUP);
    ok(await tandem(db.url, ['init']));
    const admin = await db.client();
    const initial = await snapshot(admin);
    const syncTriggers = async (table: string) =>
      (await admin.query(`SELECT tgname, pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE '\\_tandem\\_sync%' ORDER BY 1`, [table])).rows;
    ok(await start(db.url, '02_users', USERS));
    const usersTriggers = await syncTriggers('users');
    // One trigger takes every writer; the version schemas whose writers are the new version are its arguments.
    expect(usersTriggers).toHaveLength(1);
    ok(await start(db.url, '03_orders', ORDERS));
    expect(JSON.stringify(await syncTriggers('users'))).toContain('public_03_orders');

    const rolledBack = ok(await tandem(db.url, ['rollback']));
    expect(rolledBack.stdout + rolledBack.stderr).toContain('03_orders');
    expect(await schemaExists(admin, 'public_03_orders')).toBe(false);
    expect(await syncTriggers('users')).toEqual(usersTriggers);
    expect(await columnNames(admin, 'public', 'orders')).toEqual(['id', 'total']);
    const status = JSON.parse(ok(await tandem(db.url, ['status', '--json'])).stdout);
    expect(status.activeMigrations.map((m: { name: string }) => m.name)).toEqual(['02_users']);
    ok(await tandem(db.url, ['rollback']));
    expect(await snapshot(admin)).toEqual(initial);

    // Stacked again; the older one completes (dropping its triggers), then the newer one rolls back.
    ok(await start(db.url, '02_users', USERS));
    ok(await start(db.url, '03_orders', ORDERS));
    ok(await tandem(db.url, ['complete']));
    expect(await syncTriggers('users')).toEqual([]);
    ok(await tandem(db.url, ['rollback']));
    expect(await syncTriggers('users')).toEqual([]);
    expect(await columnNames(admin, 'public', 'orders')).toEqual(['id', 'total']);
    expect(await columnNames(admin, 'public', 'users')).toEqual(expect.arrayContaining(['id', 'mail', 'score']));
    expect(JSON.parse(ok(await tandem(db.url, ['status', '--json'])).stdout).activeMigrations).toEqual([]);
  });

  it('resumes a stacked start killed after any of its steps, and a stacked rollback killed after any of its steps', async () => {
    await db.query(SETUP);
    ok(await start(db.url, '02_users', USERS));
    const file = await migrationFile('03_orders', { operations: ORDERS });
    const state = async () => (await db.query(`SELECT status, step, jsonb_array_length(plan->'start') AS starts, jsonb_array_length(plan->'rollback') AS rollbacks FROM tandem.migrations WHERE name = '03_orders' AND status <> 'rolled_back'`)).rows[0];
    // Each run does one more step and dies; the next one (the same command) goes on from there.
    for (let step = 1; ; step++) {
      const run = spawnCli(['start', file], { DATABASE_URL: db.url, TANDEM_TEST_CRASH_AFTER: `start:${step}` });
      const exit = await run.exit;
      const now = await state();
      if (exit === 0) {
        expect(now.status).toBe('active');
        expect(step).toBe(now.starts + 1);
        break;
      }
      expect(exit, run.stderr()).toBe('SIGKILL');
      expect(now).toMatchObject({ status: 'starting', step });
      if (step === 1) {
        // 03's interrupted start copied views of 02's tables by their names of now: 02 may not complete under it.
        const refused = await tandem(db.url, ['complete']);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain('migration "03_orders" is being started (or its start was interrupted)');
      }
    }
    const v1 = await versionClient(db.url, null);
    const v3 = await versionClient(db.url, 'public_03_orders');
    try {
      await v3.query(`INSERT INTO users (id, mail, score) VALUES (200, 'resumed@example.com', 3)`);
      expect((await v1.query('SELECT email, score FROM users WHERE id = 200')).rows).toEqual([{ email: 'resumed@example.com', score: 3 }]);
    } finally {
      await Promise.all([v1.end(), v3.end()]);
    }
    const admin = await db.client();
    for (let step = 1; ; step++) {
      const run = spawnCli(['rollback'], { DATABASE_URL: db.url, TANDEM_TEST_CRASH_AFTER: `rollback:${step}` });
      const exit = await run.exit;
      if (exit === 0) break;
      expect(exit, run.stderr()).toBe('SIGKILL');
      expect(await state()).toMatchObject({ status: 'rolling_back', step });
    }
    expect(await schemaExists(admin, 'public_03_orders')).toBe(false);
    expect(JSON.parse(ok(await tandem(db.url, ['status', '--json'])).stdout).activeMigrations.map((m: { name: string }) => m.name)).toEqual(['02_users']);
    expect(await columnNames(admin, 'public', 'orders')).toEqual(['id', 'total']);
  }, 300_000);

  it('migrate --stack starts every pending migration on top of the ones before and leaves them active, or refuses before starting any', async () => {
    await db.query(SETUP);
    const admin = await db.client();
    const file = (operations: object[]) => JSON.stringify({ operations });
    const clashing = await migrationFolder({ '02_users.json': file(USERS), '03_sql.json': file([{ sql: { up: 'CREATE TABLE other (id int)' } }]) });
    ok(await tandem(db.url, ['init']));
    const before = await snapshot(admin);
    const refused = await tandem(db.url, ['migrate', clashing, '--stack']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('cannot be stacked on migration "02_users", before it in the folder: this migration runs raw SQL');
    expect(refused.stderr).toContain('hint: run migrate without --stack');
    expect(await snapshot(admin)).toEqual(before);
    expect((await tandem(db.url, ['migrate', clashing, '--stack', '--complete'])).code).toBe(2);

    const dir = await migrationFolder({ '02_users.json': file(USERS), '03_orders.json': file(ORDERS) });
    const tooMany = await tandem(db.url, ['migrate', dir, '--stack', '--max-active-migrations', '1']);
    expect(tooMany.code).toBe(1);
    expect(tooMany.stderr).toContain('starting "02_users", "03_orders" would leave 2 migrations active, and --max-active-migrations 1 allows 1');
    expect(await snapshot(admin)).toEqual(before);

    const stacked = ok(await tandem(db.url, ['migrate', dir, '--stack']));
    expect(stacked.stdout).toContain('02_users: started (public_02_users)');
    expect(stacked.stdout).toContain('03_orders: started, stacked on 02_users (public_03_orders)');
    expect(ok(await tandem(db.url, ['migrate', dir])).stdout).toContain('02_users, 03_orders are active; nothing else to apply');
    // Without --stack, migrate completes what is active, oldest first, before it starts anything new.
    await db.query(`INSERT INTO users (id, email) VALUES (999, 'x@example.com')`);
    const next = await migrationFolder({ '02_users.json': file(USERS), '03_orders.json': file(ORDERS), '04_nick.json': file([{ add_column: { table: 'users', column: { name: 'nick', type: 'text', nullable: true } } }]) });
    const moved = ok(await tandem(db.url, ['migrate', next]));
    expect(moved.stdout).toMatch(/02_users: completed\n03_orders: completed\n04_nick: started/);
  });

  it('a stacked start that fails undoes itself and leaves the older migration as it was', async () => {
    await db.query(SETUP);
    await db.query('UPDATE orders SET total = 0 WHERE id = 7');
    ok(await start(db.url, '02_users', USERS));
    const admin = await db.client();
    const before = await snapshot(admin);
    const triggers = async () => (await admin.query(`SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal ORDER BY tgname`)).rows;
    const usersTriggers = await triggers();
    // The backfill divides by zero on one row: start fails before its version schema exists and undoes
    // what it did (the older migration's triggers were not touched yet, and are not either by the undo).
    const failed = await start(db.url, '03_orders', [{ add_column: { table: 'orders', column: { name: 'share', type: 'int', nullable: true }, up: '100 / total' } }]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('division by zero');
    expect(await triggers()).toEqual(usersTriggers);
    expect(await snapshot(admin)).toEqual(before);
    const status = JSON.parse(ok(await tandem(db.url, ['status', '--json'])).stdout);
    expect(status.activeMigrations.map((m: { name: string }) => m.name)).toEqual(['02_users']);
    const v1 = await versionClient(db.url, null);
    const v2 = await versionClient(db.url, 'public_02_users');
    try {
      await v2.query(`INSERT INTO users (id, mail, score) VALUES (300, 'still@example.com', 1)`);
      expect((await v1.query('SELECT email FROM users WHERE id = 300')).rows).toEqual([{ email: 'still@example.com' }]);
    } finally {
      await Promise.all([v1.end(), v2.end()]);
    }
  });
});
