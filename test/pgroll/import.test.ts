import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { connectThrough, startTestProxy, databaseOf } from '../proxy/support.js';
import { usePostgres } from '../support/harness.js';
import { columnNames, migrationFolder, ok, tandem } from '../support/migrations.js';

const INIT_SQL = join(import.meta.dirname, '../fixtures/pgroll-state/init.sql');

/** pgroll's state schema, made as `pgroll init` makes it (in a session of pgroll's, whose DDL its event triggers ignore). */
async function pgrollInit(db: pg.Client, pgrollSchema = 'pgroll'): Promise<void> {
  const sql = await readFile(INIT_SQL, 'utf8');
  await db.query(`SET pgroll.no_inferred_migrations = 'TRUE'`);
  await db.query(sql.replaceAll('placeholder', `"${pgrollSchema}"`));
  await db.query(`RESET pgroll.no_inferred_migrations`);
}

/**
 * What `pgroll start` then `pgroll complete` leave: the row (the migration as pgroll serializes
 * it), the version schema with one view per table, the previous version schema dropped.
 */
async function pgrollApplied(
  db: pg.Client,
  migration: { name: string; version_schema?: string; operations: object[] },
  ddl: string,
  views: Record<string, string[]>,
  options: { previous?: string; done?: boolean; pgrollSchema?: string } = {},
): Promise<void> {
  const state = `"${options.pgrollSchema ?? 'pgroll'}"`;
  // pgroll's own sessions keep their DDL out of the inferred history this way.
  await db.query(`SET pgroll.no_inferred_migrations = 'TRUE'`);
  await db.query(ddl);
  const versionSchema = `public_${migration.version_schema ?? migration.name}`;
  await db.query(`CREATE SCHEMA "${versionSchema}"`);
  for (const [table, columns] of Object.entries(views)) {
    await db.query(`CREATE VIEW "${versionSchema}"."${table}" AS SELECT ${columns.map((c) => `"${c}"`).join(', ')} FROM public."${table}"`);
  }
  await db.query(`INSERT INTO ${state}.migrations (schema, name, parent, migration) VALUES ('public', $1, ${state}.latest_migration('public'), $2)`, [migration.name, JSON.stringify(migration)]);
  if (options.done !== false) {
    if (options.previous) await db.query(`DROP SCHEMA "${options.previous}" CASCADE`);
    await db.query(`UPDATE ${state}.migrations SET done = true, resulting_schema = ${state}.read_schema('public') WHERE schema = 'public' AND name = $1`, [migration.name]);
  }
  await db.query(`RESET pgroll.no_inferred_migrations`);
}

const USERS = { name: '01_users', operations: [{ create_table: { name: 'users', columns: [{ name: 'id', type: 'serial', pk: true }, { name: 'name', type: 'text' }] } }] };
const EMAIL = { name: '02_add_email', version_schema: 'v2', operations: [{ add_column: { table: 'users', column: { name: 'email', type: 'text', nullable: true }, up: '' } }] };

/** A migrations folder of JSON files. */
function folder(files: Record<string, object>): Promise<string> {
  return migrationFolder(Object.fromEntries(Object.entries(files).map(([name, document]) => [name, JSON.stringify(document)])));
}

/** The two migrations as the user's files: pgroll's current format, no `name` field. */
const USERS_FILE = { operations: USERS.operations };
const EMAIL_FILE = { version_schema: 'v2', operations: [{ add_column: { table: 'users', column: { name: 'email', type: 'text', nullable: true } } }] };
const AGE_FILE = { operations: [{ add_column: { table: 'users', column: { name: 'age', type: 'int', nullable: true } } }] };

describe('tandem init --from-pgroll', () => {
  const pg = usePostgres();

  it('imports a complete history with an inferred migration and a custom version_schema; migrate applies the rest; the proxy serves the latest pgroll version', async () => {
    const db = await pg.client();
    await pgrollInit(db);
    await pgrollApplied(db, USERS, `CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)`, { users: ['id', 'name'] });
    await pgrollApplied(db, EMAIL, `ALTER TABLE users ADD COLUMN email text`, { users: ['id', 'name', 'email'] }, { previous: 'public_01_users' });
    // DDL run by hand: pgroll's event trigger records it as an inferred migration.
    await db.query(`CREATE INDEX users_name ON users (name)`);
    const { rows: pgrollRows } = await db.query(`SELECT name, migration_type FROM pgroll.migrations ORDER BY created_at`);
    expect(pgrollRows.map((r) => r.migration_type)).toEqual(['pgroll', 'pgroll', 'inferred']);
    const inferred = pgrollRows[2].name as string;

    const init = await tandem(pg.url, ['init', '--from-pgroll']);
    ok(init);
    expect(init.stdout).toContain(`imported 3 migrations of schema "public" from pgroll's "pgroll":\n  01_users\n  02_add_email\n  ${inferred} (inferred)\n`);
    expect(init.stdout).toContain('adopted version schema public_v2');
    expect(init.stdout).toContain('once you will not go back to pgroll: DROP SCHEMA "pgroll" CASCADE (after dropping its event triggers)');
    expect(init.stderr).toContain("pgroll's event triggers pg_roll_handle_ddl, pg_roll_handle_drop are enabled");
    expect(init.stderr).toContain('DROP EVENT TRIGGER pg_roll_handle_ddl; DROP EVENT TRIGGER pg_roll_handle_drop;');

    const status = JSON.parse(ok(await tandem(pg.url, ['status', '--json'])).stdout);
    expect(status.history.map((m: { name: string; status: string }) => [m.name, m.status])).toEqual([
      [inferred, 'complete'],
      ['02_add_email', 'complete'],
      ['01_users', 'complete'],
    ]);
    expect((await tandem(pg.url, ['latest'])).stdout).toBe('public_v2\n');
    expect((await tandem(pg.url, ['latest', '--migration'])).stdout).toBe('02_add_email\n');

    // The proxy serves pgroll's version by its migration name, from the schema pgroll created.
    const proxy = await startTestProxy(pg.url);
    const client = await connectThrough(proxy.url(`${databaseOf(pg.url)}@02_add_email`));
    expect((await client.query(`SELECT (current_schemas(false))[1] AS first`)).rows).toEqual([{ first: 'public_v2' }]);
    await client.query(`INSERT INTO users (name, email) VALUES ('a', 'a@x')`);
    await client.end();

    // A second run finds nothing new.
    expect(ok(await tandem(pg.url, ['init', '--from-pgroll'])).stdout).toContain('was imported before; nothing new');

    // The folder as `pgroll pull` leaves it: a file for every migration, the inferred one included.
    const dir = await folder({ '01_users.json': USERS_FILE, '02_add_email.json': EMAIL_FILE, [`${inferred}.json`]: { operations: [{ sql: { up: 'CREATE INDEX users_name ON users (name)' } }] }, '99_age.json': AGE_FILE });
    const migrate = ok(await tandem(pg.url, ['migrate', dir, '--complete']));
    expect(migrate.stdout).toBe('99_age: started and completed (public_99_age)\n');
    expect(await columnNames(db, 'public', 'users')).toEqual(['id', 'name', 'email', 'age']);
    // tandem retired pgroll's version schema, and its DDL did not land in pgroll's history.
    expect((await db.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'public\\_%' ORDER BY 1`)).rows).toEqual([{ nspname: 'public_99_age' }]);
    expect((await db.query(`SELECT count(*)::int AS n FROM pgroll.migrations`)).rows).toEqual([{ n: 3 }]);
  });

  it('lines the folder up from a baseline on, as pgroll does', async () => {
    const db = await pg.client();
    await pgrollInit(db);
    await db.query(`SET pgroll.no_inferred_migrations = 'TRUE'`);
    await db.query(`CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)`);
    await db.query(
      `INSERT INTO pgroll.migrations (schema, name, migration, resulting_schema, done, parent, migration_type)
       VALUES ('public', '01_baseline', '{"name": "01_baseline", "operations": []}', pgroll.read_schema('public'), true, NULL, 'baseline')`,
    );
    await db.query(`RESET pgroll.no_inferred_migrations`);
    await pgrollApplied(db, EMAIL, `ALTER TABLE users ADD COLUMN email text`, { users: ['id', 'name', 'email'] });
    const init = ok(await tandem(pg.url, ['init', '--from-pgroll']));
    expect(init.stdout).toContain('  01_baseline (baseline)\n  02_add_email\n');

    // Files up to the baseline's name are the past it stands for: never applied, never compared.
    const dir = await folder({ '00_old.json': { operations: [{ sql: { up: 'SELECT broken(' } }] }, '01_baseline.json': { operations: [{ sql: { up: 'SELECT 1' } }] }, '02_add_email.json': EMAIL_FILE, '03_age.json': AGE_FILE });
    expect(ok(await tandem(pg.url, ['migrate', dir])).stdout).toBe('03_age: started (public_03_age)\n');
  });

  it('refuses while pgroll has an active migration, and where tandem has a history of its own', async () => {
    const db = await pg.client();
    await pgrollInit(db, 'pgroll_state');
    await pgrollApplied(db, USERS, `CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)`, { users: ['id', 'name'] }, { pgrollSchema: 'pgroll_state' });
    await pgrollApplied(db, EMAIL, `ALTER TABLE users ADD COLUMN email text`, { users: ['id', 'name', 'email'] }, { pgrollSchema: 'pgroll_state', done: false });

    const missing = await tandem(pg.url, ['init', '--from-pgroll']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`pgroll's state schema "pgroll" does not exist`);

    const active = await tandem(pg.url, ['init', '--from-pgroll', '--pgroll-schema', 'pgroll_state']);
    expect(active.code).toBe(1);
    expect(active.stderr).toContain(`pgroll's migration "02_add_email" on schema "public" is active (started, not completed)`);
    expect(active.stderr).toContain('finish it with pgroll first (pgroll complete, or pgroll rollback)');
    // PGROLL_STATE_SCHEMA, as pgroll's scripts set it, says where pgroll's state is.
    process.env.PGROLL_STATE_SCHEMA = 'pgroll_state';
    try {
      expect((await tandem(pg.url, ['init', '--from-pgroll'])).stderr).toContain(`pgroll's migration "02_add_email" on schema "public" is active`);
    } finally {
      delete process.env.PGROLL_STATE_SCHEMA;
    }
    expect((await db.query(`SELECT to_regclass('tandem.migrations') AS t`)).rows).toEqual([{ t: null }]);

    await db.query(`UPDATE pgroll_state.migrations SET done = true`);
    const own = await folder({ '01_teams.json': { operations: [{ create_table: { name: 'teams', columns: [{ name: 'id', type: 'int', pk: true }] } }] } });
    ok(await tandem(pg.url, ['--state-schema', 'mine', 'migrate', own]));
    // pgroll's global flag, before the command as pgroll's scripts write it.
    const conflict = await tandem(pg.url, ['--pgroll-schema', 'pgroll_state', '--state-schema', 'mine', 'init', '--from-pgroll']);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain(`tandem's state schema "mine" already records 1 migration on schema "public"`);
  });
});
