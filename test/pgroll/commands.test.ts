import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { usePostgres } from '../support/harness.js';
import { migrationFolder as folder, ok, tandem } from '../support/migrations.js';

const USERS = 'operations:\n  - create_table: {name: users, columns: [{name: id, type: int, pk: true}, {name: email, type: text, nullable: true}]}\n';
const RENAME = '{"name": "02_rename", "operations": [{"rename_column": {"table": "users", "from": "email", "to": "mail"}}]}';
const AGE = 'operations:\n  - add_column: {table: users, column: {name: age, type: int, nullable: true}}\n';

/** Runs `body` with environment variables set (the CLI runs in this process), then puts them back. */
const saved = new Map<string, string | undefined>();
function setEnv(values: Record<string, string | undefined>): void {
  for (const [key, value] of Object.entries(values)) {
    if (!saved.has(key)) saved.set(key, process.env[key]);
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
}
afterEach(() => {
  for (const [key, value] of saved) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  saved.clear();
});

describe("pgroll's commands and flags", () => {
  const pg = usePostgres();

  it('latest schema, migration and url, from the database and from a folder (--local)', async () => {
    const dir = await folder({ '01_users.yaml': USERS, '02_rename.json': RENAME });
    ok(await tandem(pg.url, ['migrate', dir]));
    expect((await tandem(pg.url, ['latest', 'schema'])).stdout).toBe('public_02_rename\n');
    expect((await tandem(pg.url, ['latest'])).stdout).toBe('public_02_rename\n');
    expect((await tandem(pg.url, ['latest', 'migration'])).stdout).toBe('02_rename\n');
    await writeFile(join(dir, '03_age.yaml'), AGE);
    expect((await tandem(pg.url, ['latest', 'schema', '--local', dir])).stdout).toBe('public_03_age\n');
    expect((await tandem(pg.url, ['latest', 'migration', '-l', dir])).stdout).toBe('03_age\n');

    const url = await tandem(pg.url, ['latest', 'url', 'postgres://app:pw@db.example:5432/app?sslmode=require']);
    ok(url);
    expect(url.stdout).toBe('postgres://app:pw@db.example:5432/app?sslmode=require&options=-c%20search_path%3Dpublic_02_rename\n');
    expect(url.stderr).toBe('tandem: through tandem proxy, name the version in the database instead: app@02_rename\n');
    const own = ok(await tandem(pg.url, ['latest', 'url']));
    const client = new (await import('pg')).default.Client({ connectionString: own.stdout.trim() });
    await client.connect();
    expect((await client.query('SHOW search_path')).rows).toEqual([{ search_path: 'public_02_rename' }]);
    expect((await client.query('SELECT mail FROM users')).rows).toEqual([]);
    await client.end();

    const bad = await tandem(pg.url, ['latest', 'schemas']);
    expect(bad.code).toBe(2);
    expect((await tandem(pg.url, ['latest', 'schema', 'postgres://x/y'])).code).toBe(2);
  });

  it('validate checks a file against the live schema and changes nothing', async () => {
    const dir = await folder({ '01_users.yaml': USERS });
    ok(await tandem(pg.url, ['migrate', dir, '--complete']));
    const good = join(dir, '02_age.yaml');
    await writeFile(good, AGE);
    expect(ok(await tandem(pg.url, ['validate', good])).stdout).toBe('02_age: valid; start would create version schema public_02_age\n');
    const badFile = join(dir, '02_bad.json');
    await writeFile(badFile, '{"operations": [{"add_column": {"table": "userz", "column": {"name": "a", "type": "int", "nullable": true}}}]}');
    const bad = await tandem(pg.url, ['validate', badFile]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('table "userz" does not exist in schema "public"');
    expect((await pg.query(`SELECT count(*)::int AS n FROM tandem.migrations`)).rows).toEqual([{ n: 1 }]);
    expect((await pg.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'public_02_age'`)).rows).toEqual([]);
  });

  it('pull writes the history the folder lacks; migrate then finds the folder up to date', async () => {
    const dir = await folder({ '01_users.yaml': USERS, '02_rename.json': RENAME });
    ok(await tandem(pg.url, ['migrate', dir, '--complete']));
    const empty = await folder({});
    const pulled = ok(await tandem(pg.url, ['pull', empty]));
    expect(pulled.stdout).toBe(`wrote ${join(empty, '01_users.yaml')}\nwrote ${join(empty, '02_rename.yaml')}\n`);
    expect(await readFile(join(empty, '01_users.yaml'), 'utf8')).toContain('create_table:');
    expect(ok(await tandem(pg.url, ['migrate', empty])).stdout).toContain('up to date: 2 migrations applied');
    expect(ok(await tandem(pg.url, ['pull', empty, '--json'])).stdout).toBe('the folder has every migration of the history (2)\n');
    const partial = await folder({ '01_users.yaml': USERS });
    ok(await tandem(pg.url, ['pull', partial, '--json']));
    expect((await readdir(partial)).sort()).toEqual(['01_users.yaml', '02_rename.json']);
  });

  it("status --json carries pgroll's schema, version and status beside tandem's fields", async () => {
    const before = JSON.parse(ok(await tandem(pg.url, ['status', '--json'])).stdout);
    expect(before).toMatchObject({ schema: 'public', version: '', status: 'No migrations', Schema: 'public', Version: '', Status: 'No migrations', initialized: false });
    const dir = await folder({ '01_users.yaml': USERS, '02_rename.json': RENAME });
    ok(await tandem(pg.url, ['migrate', dir]));
    const active = JSON.parse(ok(await tandem(pg.url, ['status', '--json'])).stdout);
    expect(active).toMatchObject({ schema: 'public', version: '02_rename', status: 'In progress', Version: '02_rename', Status: 'In progress' });
    expect(active.active).toMatchObject({ name: '02_rename' });
    ok(await tandem(pg.url, ['complete']));
    expect(JSON.parse(ok(await tandem(pg.url, ['status', '--json'])).stdout)).toMatchObject({ version: '02_rename', status: 'Complete' });
  });

  it('migrate --expect-one refuses a folder with more than one migration waiting, changing nothing', async () => {
    const dir = await folder({ '01_users.yaml': USERS, '02_rename.json': RENAME });
    const refused = await tandem(pg.url, ['migrate', dir, '--expect-one']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('--expect-one: 2 migrations are waiting to be applied (01_users, 02_rename)');
    expect((await pg.query(`SELECT to_regclass('public.users') AS t`)).rows).toEqual([{ t: null }]);
    const one = await folder({ '01_users.yaml': USERS });
    expect(ok(await tandem(pg.url, ['migrate', one, '--expect-one', '--complete'])).stdout).toContain('01_users: started and completed');
  });

  it('--role and PGROLL_ROLE: the objects a migration creates belong to the role', async () => {
    await pg.query(`DO $$ BEGIN CREATE ROLE app_owner NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await pg.query(`GRANT CREATE ON DATABASE "${new URL(pg.url).pathname.slice(1)}" TO app_owner; GRANT ALL ON SCHEMA public TO app_owner`);
    const dir = await folder({ '01_users.yaml': USERS });
    ok(await tandem(pg.url, ['--role', 'app_owner', 'migrate', dir, '--complete']));
    const owners = `SELECT relname, pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname IN ('users', 'teams') AND relkind = 'r' ORDER BY 1`;
    expect((await pg.query(owners)).rows).toEqual([{ relname: 'users', owner: 'app_owner' }]);
    expect((await pg.query(`SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'public_01_users'`)).rows).toEqual([{ owner: 'app_owner' }]);

    setEnv({ PGROLL_ROLE: 'app_owner' });
    await writeFile(join(dir, '02_teams.yaml'), 'operations:\n  - create_table: {name: teams, columns: [{name: id, type: int, pk: true}]}\n');
    ok(await tandem(pg.url, ['migrate', dir, '--complete']));
    expect((await pg.query(owners)).rows).toEqual([{ relname: 'teams', owner: 'app_owner' }, { relname: 'users', owner: 'app_owner' }]);
    setEnv({ PGROLL_ROLE: 'no_such_role' });
    // Only the sessions that change the schema take the role.
    ok(await tandem(pg.url, ['status']));
    expect((await tandem(pg.url, ['migrate', dir])).stderr).toContain('role "no_such_role" does not exist');
  });

  it('--use-version-schema=false: start creates no version schema, the triggers still keep both shapes in step, complete and rollback work', async () => {
    await pg.query(`CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@x'), (2, NULL)`);
    const dir = await folder({ '01_wide.yaml': 'operations:\n  - alter_column: {table: users, column: id, type: bigint, up: id, down: id}\n  - add_column: {table: users, up: upper(email), column: {name: shout, type: text, nullable: true}}\n' });
    const started = ok(await tandem(pg.url, ['--use-version-schema=false', 'migrate', dir]));
    expect(started.stdout).toContain('01_wide: started (no version schema)');
    const schemas = `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'public\\_%' ORDER BY 1`;
    expect((await pg.query(schemas)).rows).toEqual([]);
    // The old app's writes to the table reach the new columns, through the trigger and the backfill.
    await pg.query(`INSERT INTO users (id, email) VALUES (3, 'c@x')`);
    expect((await pg.query(`SELECT id, shout FROM users ORDER BY id`)).rows).toEqual([
      { id: 1, shout: 'A@X' },
      { id: 2, shout: null },
      { id: 3, shout: 'C@X' },
    ]);
    const status = JSON.parse(ok(await tandem(pg.url, ['status', '--json'])).stdout);
    expect(status.active.name).toBe('01_wide');
    expect(status.versions).toEqual([]);
    // Nothing to serve: the proxy's list of versions is empty, so `app@01_wide` is unknown.
    expect((await pg.query(`SELECT count(*)::int AS n FROM tandem.version_schemas`)).rows[0].n).toBe(0);
    expect(ok(await tandem(pg.url, ['complete'])).stdout).toContain('01_wide: completed; no version schema is left');
    expect((await pg.query(`SELECT id, shout FROM users ORDER BY id`)).rows.map((r) => [r.id, r.shout])).toEqual([
      ['1', 'A@X'],
      ['2', null],
      ['3', 'C@X'],
    ]);
    expect((await pg.query(`SELECT data_type FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'id'`)).rows).toEqual([{ data_type: 'bigint' }]);

    // With a version schema from before: complete of a migration that made none still retires it.
    await writeFile(join(dir, '02_age.yaml'), AGE);
    ok(await tandem(pg.url, ['migrate', dir]));
    ok(await tandem(pg.url, ['complete']));
    expect((await pg.query(schemas)).rows).toEqual([{ nspname: 'public_02_age' }]);
    await writeFile(join(dir, '03_rename.json'), '{"operations": [{"rename_column": {"table": "users", "from": "email", "to": "mail"}}]}');
    setEnv({ PGROLL_USE_VERSION_SCHEMA: 'false' });
    ok(await tandem(pg.url, ['migrate', dir]));
    expect((await pg.query(schemas)).rows).toEqual([{ nspname: 'public_02_age' }]);
    ok(await tandem(pg.url, ['rollback']));
    expect((await pg.query(schemas)).rows).toEqual([{ nspname: 'public_02_age' }]);
    ok(await tandem(pg.url, ['migrate', dir, '--complete']));
    expect((await pg.query(schemas)).rows).toEqual([]);
    expect((await pg.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY 1`)).rows.map((r) => r.column_name)).toEqual([
      'age',
      'id',
      'mail',
      'shout',
    ]);
    setEnv({ PGROLL_USE_VERSION_SCHEMA: 'maybe' });
    const bad = await tandem(pg.url, ['status']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--use-version-schema must be true or false, got "maybe"');
  });

  it("pgroll's environment variables stand in for the flags: PGROLL_PG_URL, PGROLL_SCHEMA, PGROLL_LOCK_TIMEOUT", async () => {
    await pg.query(`CREATE SCHEMA app`);
    setEnv({ DATABASE_URL: undefined, PGROLL_PG_URL: pg.url, PGROLL_SCHEMA: 'app', PGROLL_LOCK_TIMEOUT: '750' });
    const dir = await folder({ '01_users.yaml': USERS });
    ok(await runCli(['--log-level', 'silent', 'migrate', dir, '--complete']));
    expect((await pg.query(`SELECT to_regclass('app.users') IS NOT NULL AS ok`)).rows).toEqual([{ ok: true }]);
    expect(ok(await runCli(['latest'])).stdout).toBe('app_01_users\n');
    // A flag wins over the variable.
    expect((await runCli(['--schema', 'public', 'latest'])).stderr).toContain('no migration has been applied to schema "public" yet');
    expect(JSON.parse(ok(await runCli(['status', '--json'])).stdout).schema).toBe('app');
    setEnv({ PGROLL_LOCK_TIMEOUT: 'soon' });
    const bad = await runCli(['status']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--lock-timeout must be a positive whole number, got "soon"');
    setEnv({ PGROLL_LOCK_TIMEOUT: undefined, PGROLL_PG_URL: 'mysql://x' });
    const badUrl = await runCli(['status']);
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toContain('PGROLL_PG_URL "mysql://x" is not a PostgreSQL connection URL');
  });

  it('create writes a new file to fill in; baseline adopts the schema as it stands and migrate goes on after it', async () => {
    const dir = await folder({ '01_users.yaml': USERS });
    const created = ok(await tandem(pg.url, ['create', '--name', '02_teams', '--empty', '--dir', dir]));
    expect(created.stdout).toBe(`wrote ${join(dir, '02_teams.yaml')}: add its operations before tandem start\n`);
    expect(await readFile(join(dir, '02_teams.yaml'), 'utf8')).toBe('operations: []\n');
    expect((await tandem(pg.url, ['create', '-n', '02_teams', '--dir', dir])).code).toBe(2);
    expect(ok(await tandem(pg.url, ['create', '-n', '00_early', '--json', '--dir', dir])).stderr).toContain('00_early sorts before 02_teams.yaml');

    // A schema that exists already (made by hand, or by another tool): a baseline adopts it.
    await pg.query(`CREATE TABLE users (id int PRIMARY KEY, email text)`);
    const base = await folder({});
    expect((await tandem(pg.url, ['baseline', '01_start', base])).code).toBe(2);
    const baseline = ok(await tandem(pg.url, ['baseline', '01_start', base, '--yes']));
    expect(baseline.stdout).toContain(`baseline 01_start recorded for schema "public"; placeholder ${join(base, '01_start.yaml')} written`);
    expect(await readFile(join(base, '01_start.yaml'), 'utf8')).toBe('operations:\n  - sql:\n      up: ""\n');
    await writeFile(join(base, '00_before.yaml'), USERS);
    await writeFile(join(base, '02_age.yaml'), AGE);
    expect(ok(await tandem(pg.url, ['migrate', base, '--complete'])).stdout).toBe('02_age: started and completed (public_02_age)\n');
    const again = await tandem(pg.url, ['baseline', '01_start', base, '--yes']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('migration "01_start" was already applied');
  });
});
