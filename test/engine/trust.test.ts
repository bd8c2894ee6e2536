/**
 * tandem tried as an attacker and as an unlucky operator would try it (issue 11): schemas it must
 * never drop, functions it must never call in a superuser's name, and the state it leaves after a
 * crash at every step of complete.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import pg from 'pg';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, start, tandem, versionClient } from '../support/migrations.js';
import { spawnCli, waitFor } from '../support/spawn.js';

describe('trust', () => {
  const db = usePostgres();

  async function schemaTables(schema: string): Promise<string[]> {
    const { rows } = await db.query(`SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1`, [schema]);
    return rows.map((r: { tablename: string }) => r.tablename);
  }

  describe('version_schema never names a schema tandem did not create', () => {
    it('refuses an existing schema, the state schema and a live version, and changes nothing', async () => {
      // version_schema is put after "<schema>_", as pgroll does: "sales" names public_sales.
      await db.query(`CREATE SCHEMA public_sales; CREATE TABLE public_sales.orders (id int PRIMARY KEY); INSERT INTO public_sales.orders VALUES (1), (2);
                      CREATE TABLE users (id int PRIMARY KEY, email text)`);
      ok(await start(db.url, '01_base', [{ add_column: { table: 'users', column: { name: 'a', type: 'int', nullable: true } } }], ['--complete']));
      const cases: [string, string[], RegExp][] = [
        ['sales', [], /the version schema "public_sales" already exists \(owned by \w+\)/],
        ['01_base', [], /the version schema "public_01_base" is the live version of migration "01_base"/],
        ['state', ['--state-schema', 'public_state'], /the version schema "public_state" is tandem's state schema/],
      ];
      const before = await db.query(`SELECT count(*)::int AS n FROM tandem.migrations`);
      for (const [versionSchema, flags, message] of cases) {
        const file = await migrationFile('02_next', {
          version_schema: versionSchema,
          operations: [{ add_column: { table: 'users', column: { name: 'b', type: 'int', nullable: true } } }],
        });
        const result = await tandem(db.url, [...flags, 'start', file]);
        expect(result.code, versionSchema).toBe(1);
        expect(result.stderr).toMatch(message);
        expect(result.stderr).toContain('version_schema');
      }
      // A migration name whose default version schema (<schema>_<name>) exists is refused the same way.
      await db.query(`CREATE SCHEMA public_02_clash`);
      const clash = await start(db.url, '02_clash', [{ add_column: { table: 'users', column: { name: 'b', type: 'int', nullable: true } } }]);
      expect(clash.code).toBe(1);
      expect(clash.stderr).toMatch(/the version schema "public_02_clash" already exists/);
      expect(clash.stderr).toMatch(/rename the migration, or set version_schema/);
      expect(await schemaTables('public_sales')).toEqual(['orders']);
      expect((await db.query(`SELECT count(*)::int AS n FROM public_sales.orders`)).rows[0].n).toBe(2);
      expect((await db.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'public_state'`)).rows[0].n).toBe(0);
      expect((await db.query(`SELECT count(*)::int AS n FROM tandem.migrations`)).rows[0].n).toBe(before.rows[0].n);
      expect((await db.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'b'`)).rows).toEqual([]);
    });

    it('a version schema holding something of the user\'s is not dropped: rollback fails naming it, and works once it is moved', async () => {
      await db.query(`CREATE TABLE users (id int PRIMARY KEY, email text); CREATE SCHEMA keep`);
      ok(await start(db.url, '01_add', [{ add_column: { table: 'users', column: { name: 'a', type: 'int', nullable: true } } }]));
      await db.query(`CREATE TABLE public_01_add.notes (id int); INSERT INTO public_01_add.notes VALUES (7);
                      CREATE FUNCTION public_01_add.helper() RETURNS int LANGUAGE sql AS 'SELECT 1'`);
      const refused = await tandem(db.url, ['rollback']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/version schema "?public_01_add"? holds objects tandem did not put there: function helper, table notes/);
      expect(refused.stderr).toMatch(/run tandem rollback again/);
      expect((await db.query(`SELECT id FROM public_01_add.notes`)).rows).toEqual([{ id: 7 }]);
      await db.query(`ALTER TABLE public_01_add.notes SET SCHEMA keep; DROP FUNCTION public_01_add.helper()`);
      ok(await tandem(db.url, ['rollback']));
      expect((await db.query(`SELECT id FROM keep.notes`)).rows).toEqual([{ id: 7 }]);
      expect((await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'public_01_add'`)).rows).toEqual([]);
      expect((await db.query(`SELECT count(*)::int AS n FROM tandem.version_schemas`)).rows[0].n).toBe(0);
    });

    it('a schema tandem has no record of creating is never dropped', async () => {
      await db.query(`CREATE TABLE users (id int PRIMARY KEY, email text)`);
      ok(await start(db.url, '01_add', [{ add_column: { table: 'users', column: { name: 'a', type: 'int', nullable: true } } }]));
      // As if the record were lost or the schema had been swapped for another of the same name.
      await db.query(`DELETE FROM tandem.version_schemas`);
      const refused = await tandem(db.url, ['rollback']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/schema "?public_01_add"? was not created by tandem: it is not dropped/);
      expect((await db.query(`SELECT 1 AS ok FROM pg_namespace WHERE nspname = 'public_01_add'`)).rows).toEqual([{ ok: 1 }]);
    });

    it('a state schema from before version schemas were recorded adopts the live ones', async () => {
      await db.query(`CREATE TABLE users (id int PRIMARY KEY, email text)`);
      ok(await start(db.url, '01_add', [{ add_column: { table: 'users', column: { name: 'a', type: 'int', nullable: true } } }]));
      // The state schema as tandem 0.1 left it: no records, state_version 1, the old backfill check,
      // one in-flight migration per schema.
      await db.query(`DROP TABLE tandem.version_schemas; UPDATE tandem.meta SET value = '1' WHERE key = 'state_version';
                      DROP INDEX tandem.migrations_one_in_transition;
                      CREATE UNIQUE INDEX migrations_one_in_flight ON tandem.migrations (schema_name) WHERE status IN ('starting', 'active', 'completing', 'rolling_back');
                      ALTER TABLE tandem.migrations DROP COLUMN pgroll_type;
                      ALTER TABLE tandem.backfills DROP CONSTRAINT backfills_status_check,
                        ADD CONSTRAINT backfills_status_check CHECK (status IN ('running', 'stalled', 'done'))`);
      ok(await tandem(db.url, ['init']));
      expect((await db.query(`SELECT version_schema, migration FROM tandem.version_schemas`)).rows).toEqual([
        { version_schema: 'public_01_add', migration: '01_add' },
      ]);
      expect((await db.query(`SELECT value FROM tandem.meta WHERE key = 'state_version'`)).rows).toEqual([{ value: '4' }]);
      expect((await db.query(`SELECT indexname FROM pg_indexes WHERE schemaname = 'tandem' AND indexname LIKE 'migrations_one%'`)).rows).toEqual([{ indexname: 'migrations_one_in_transition' }]);
      ok(await tandem(db.url, ['status']));
      ok(await tandem(db.url, ['rollback']));
      expect((await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'public_01_add'`)).rows).toEqual([]);
    });
  });

  it('up/down expressions never run functions another role planted on the search_path ("$user", CREATE on a searched schema)', async () => {
    const superuser = (await db.query(`SELECT current_user AS name`)).rows[0].name as string;
    await db.server.admin(`DO $$ BEGIN CREATE ROLE evil LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await db.server.admin(`ALTER ROLE evil NOSUPERUSER`);
    const database = new URL(db.url).pathname.slice(1);
    await db.query(`GRANT CREATE ON DATABASE "${database}" TO evil; GRANT CREATE ON SCHEMA public TO evil;
                    CREATE SCHEMA app; CREATE TABLE app.users (id int PRIMARY KEY, email varchar(100));
                    INSERT INTO app.users SELECT g, 'User' || g || '@Example.com' FROM generate_series(1, 50) g`);
    const url = new URL(db.url);
    url.username = 'evil';
    const evil = new pg.Client({ connectionString: url.toString() });
    await evil.connect();
    const planted = (schema: string) => `CREATE FUNCTION ${schema}.lower(varchar) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN EXECUTE 'ALTER ROLE evil SUPERUSER'; RETURN pg_catalog.lower($1::text); END $$`;
    try {
      // A schema named like the superuser is first on its default search_path ("$user", public), and
      // an exact match on varchar beats pg_catalog.lower(text) wherever the search reaches it.
      await evil.query(`CREATE SCHEMA "${superuser}"`);
      await evil.query(planted(`"${superuser}"`));
      await evil.query(planted('public'));
    } finally {
      await evil.end();
    }
    ok(await tandem(db.url, ['--schema', 'app', 'start', await migrationFile('01_lower', {
      operations: [{ alter_column: { table: 'users', column: 'email', type: 'text', up: 'lower(email)', down: 'email' } }],
    })]));
    // The superuser writes to the table directly, with its default search_path: the trigger runs.
    await db.query(`INSERT INTO app.users VALUES (51, 'Direct@Example.com')`);
    await db.query(`SET search_path = "${superuser}", public; UPDATE app.users SET email = 'Again@Example.com' WHERE id = 2`);
    const escalated = await db.server.admin(`SELECT rolsuper FROM pg_roles WHERE rolname = 'evil'`);
    expect(escalated.rows).toEqual([{ rolsuper: false }]);
    // And the expression still did its job, with pg_catalog's lower.
    const v = await versionClient(db.url, 'app_01_lower', 'app');
    try {
      const { rows } = await v.query(`SELECT id, email FROM users WHERE id IN (1, 2, 51) ORDER BY id`);
      expect(rows).toEqual([
        { id: 1, email: 'user1@example.com' },
        { id: 2, email: 'again@example.com' },
        { id: 51, email: 'direct@example.com' },
      ]);
    } finally {
      await v.end();
    }
    const fn = await db.query(`SELECT proconfig FROM pg_proc WHERE proname = 'sync_app_users'`);
    expect(fn.rows).toEqual([{ proconfig: ['search_path=pg_catalog, app, pg_temp'] }]);
  });

  it('kill -9 after every step of complete on two tables, while the new version writes to both: no failed write, no lost row', async () => {
    await db.query(`CREATE TABLE a (id int PRIMARY KEY, v int NOT NULL); CREATE TABLE b (id int PRIMARY KEY, v int NOT NULL);
                    INSERT INTO a SELECT g, g FROM generate_series(1, 200) g; INSERT INTO b SELECT g, g FROM generate_series(1, 200) g`);
    ok(await start(db.url, '01_base', [{ add_column: { table: 'a', column: { name: 'note', type: 'text', nullable: true } } }], ['--complete']));
    const file = await migrationFile('02_widen', {
      operations: [
        { alter_column: { table: 'a', column: 'v', type: 'bigint' } },
        { alter_column: { table: 'b', column: 'v', type: 'bigint' } },
        { rename_column: { table: 'b', from: 'v', to: 'value' } },
      ],
    });
    ok(await tandem(db.url, ['start', file]));
    const steps = (await db.query(`SELECT jsonb_array_length(plan->'complete') AS n FROM tandem.migrations WHERE name = '02_widen'`)).rows[0].n as number;
    expect(steps).toBeGreaterThan(4);

    // The new version's app: inserts into both tables and updates old rows, without pause.
    const app = await versionClient(db.url, 'public_02_widen');
    const written = { a: new Map<number, number>(), b: new Map<number, number>() };
    const failures: string[] = [];
    let writes = 0;
    let running = true;
    // If the test fails or times out, the writer must stop with it: a loop of queries on a closed
    // client fails without ever waiting for I/O and would starve the test process.
    onTestFinished(() => {
      running = false;
    });
    const writer = (async () => {
      for (let i = 1000; running; i++) {
        await new Promise((resolve) => setImmediate(resolve));
        for (const [table, column] of [['a', 'v'], ['b', 'value']] as const) {
          try {
            await app.query(`INSERT INTO ${table} (id, ${column}) VALUES ($1, $2)`, [i, i * 10]);
            written[table].set(i, i * 10);
            const old = (i % 200) + 1;
            await app.query(`UPDATE ${table} SET ${column} = $2 WHERE id = $1`, [old, i]);
            written[table].set(old, i);
          } catch (error) {
            failures.push(`${table}: ${(error as Error).message}`);
          }
        }
        writes++;
      }
    })();
    try {
      // Each run does one more step and dies; the last one finds every step done and only records it.
      for (let step = 1; step <= steps + 1; step++) {
        const run = spawnCli(['complete'], { DATABASE_URL: db.url, ...(step <= steps ? { TANDEM_TEST_CRASH_AFTER: `complete:${step}` } : {}) });
        expect(await run.exit, run.stderr()).toBe(step <= steps ? 'SIGKILL' : 0);
        const state = (await db.query(`SELECT status, step FROM tandem.migrations WHERE name = '02_widen'`)).rows[0];
        expect(state).toEqual(step <= steps ? { status: 'completing', step } : { status: 'complete', step: steps });
        // Between two runs the application goes on writing to whatever the crash left.
        const at = writes;
        await waitFor(async () => (writes >= at + 3 ? true : undefined), 30_000, 'the app to write after the crash');
      }
    } finally {
      running = false;
      await writer;
      await app.end();
    }
    expect(failures).toEqual([]);
    for (const [table, column] of [['a', 'v'], ['b', 'value']] as const) {
      const { rows } = await db.query(`SELECT id, ${column}::int AS v FROM ${table}`);
      const actual = new Map(rows.map((r: { id: number; v: number }) => [r.id, r.v]));
      expect(actual.size).toBeGreaterThan(200);
      for (const [id, value] of written[table]) expect(actual.get(id), `${table} ${id}`).toBe(value);
      const type = await db.query(`SELECT format_type(atttypid, atttypmod) AS type, attnotnull FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2`, [table, column]);
      expect(type.rows).toEqual([{ type: 'bigint', attnotnull: true }]);
    }
    expect((await db.query(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE '_tandem%'`)).rows[0].n).toBe(0);
    // One CLI process per step of complete: on a loaded 2-core machine each takes seconds to start.
  }, 600_000);
});
