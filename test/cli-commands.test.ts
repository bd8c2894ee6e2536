import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { usePostgres } from './support/harness.js';
import { columnNames, migrationFile, migrationFolder as folder, ok, start, tandem, versionClient } from './support/migrations.js';

const createUsers = 'operations:\n  - create_table: {name: users, columns: [{name: id, type: int, pk: true}, {name: email, type: text, nullable: true}]}\n';
const renameEmail = '{"operations": [{"rename_column": {"table": "users", "from": "email", "to": "email_address"}}]}';
const addAge = 'operations:\n  - add_column: {table: users, column: {name: age, type: int, nullable: true}}\n';

describe('migrate, latest, status, start --dry-run', () => {
  const pg = usePostgres();

  it('migrate applies the folder in name order, completing all but the last, and is idempotent', async () => {
    const dir = await folder({ '01_users.yaml': createUsers, '02_rename.json': renameEmail, 'README.md': 'not a migration' });
    const first = await tandem(pg.url, ['migrate', dir]);
    ok(first);
    expect(first.stdout).toContain('01_users: started and completed (public_01_users)');
    expect(first.stdout).toContain('02_rename: started (public_02_rename)');
    expect((await tandem(pg.url, ['latest'])).stdout).toBe('public_02_rename\n');
    expect((await tandem(pg.url, ['latest', '--migration'])).stdout).toBe('02_rename\n');
    const again = await tandem(pg.url, ['migrate', dir]);
    ok(again);
    expect(again.stdout).toContain('02_rename is active; nothing else to apply');

    await writeFile(join(dir, '03_age.yml'), addAge);
    const third = await tandem(pg.url, ['migrate', dir, '--complete']);
    ok(third);
    expect(third.stdout).toContain('02_rename: completed');
    expect(third.stdout).toContain('03_age: started and completed');
    const db = await pg.client();
    expect(await columnNames(db, 'public', 'users')).toEqual(['id', 'email_address', 'age']);
    expect((await tandem(pg.url, ['migrate', dir])).stdout).toContain('up to date: 3 migrations applied');
  });

  it('migrate refuses when history and folder disagree, naming the file', async () => {
    const dir = await folder({ '01_users.yaml': createUsers, '02_rename.json': renameEmail });
    ok(await tandem(pg.url, ['migrate', dir, '--complete']));

    await writeFile(join(dir, '02_rename.json'), renameEmail.replace('email_address', 'mail'));
    const edited = await tandem(pg.url, ['migrate', dir]);
    expect(edited.code).toBe(1);
    expect(edited.stderr).toContain('02_rename.json: migration "02_rename" changed since it was applied');

    await writeFile(join(dir, '02_rename.json'), renameEmail);
    await writeFile(join(dir, '00_early.yaml'), addAge);
    const inserted = await tandem(pg.url, ['migrate', dir]);
    expect(inserted.code).toBe(1);
    expect(inserted.stderr).toContain('migration "01_users" was applied as number 1, but its file sorts as number 2; "00_early" sorts before it and was never applied');

    await rename(join(dir, '00_early.yaml'), join(dir, '03_age.yaml'));
    await rename(join(dir, '02_rename.json'), join(dir, 'x.txt'));
    const missing = await tandem(pg.url, ['migrate', dir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('migration "02_rename" was applied as number 2, but the folder has "03_age" there');
  });

  it('status shows the active migration, backfill, versions and what complete would do', async () => {
    await pg.query(`CREATE TABLE t (id int PRIMARY KEY, a int); INSERT INTO t SELECT g, g FROM generate_series(1, 500) g`);
    ok(await start(pg.url, '01_b', [{ add_column: { table: 't', up: 'a * 2', column: { name: 'b', type: 'int' } } }]));
    const text = await tandem(pg.url, ['status']);
    ok(text);
    expect(text.stdout).toContain('active migration: 01_b — active');
    expect(text.stdout).toMatch(/backfill t: done, 500\/500 rows \(100%\), \d+ rows\/s, by primary key \(id\)/);
    expect(text.stdout).toContain('tandem complete would now:');
    expect(text.stdout).toContain('validate constraint _tandem_nn_t_b');
    expect(text.stdout).toMatch(/public_01_b\s+latest\s+01_b \(active\) — clients: unknown/);
    const json = JSON.parse((await tandem(pg.url, ['status', '--json'])).stdout) as Record<string, any>;
    expect(json.active).toMatchObject({ name: '01_b', status: 'active', versionSchema: 'public_01_b' });
    expect(json.active.backfills[0]).toMatchObject({ table: 't', rowsDone: 500, status: 'done', method: 'primary key' });
    expect(json.versions).toEqual([expect.objectContaining({ versionSchema: 'public_01_b', role: 'latest', clients: null })]);
  });

  it('status before tandem was ever used', async () => {
    const result = await tandem(pg.url, ['status']);
    ok(result);
    expect(result.stdout).toContain('tandem has not been used here yet');
  });

  it('start --dry-run prints every statement and changes nothing', async () => {
    await pg.query(`CREATE TABLE t (id int PRIMARY KEY, a int)`);
    const file = await migrationFile('01_dry', { operations: [{ alter_column: { table: 't', column: 'a', type: 'bigint', up: 'a', down: 'a' } }] });
    const result = await tandem(pg.url, ['start', file, '--dry-run']);
    ok(result);
    expect(result.stdout).toContain('-- migration 01_dry (version schema public_01_dry)');
    expect(result.stdout).toContain('ALTER TABLE "public"."t" ADD COLUMN "_tandem_new_a" bigint;');
    expect(result.stdout).toContain('CREATE OR REPLACE FUNCTION "tandem"."sync_public_t"() RETURNS trigger');
    expect(result.stdout).toMatch(/-- complete: \d+ steps/);
    const { rows } = await pg.query(`SELECT to_regnamespace('tandem') IS NULL AS none, to_regnamespace('public_01_dry') IS NULL AS no_version`);
    expect(rows[0]).toEqual({ none: true, no_version: true });
  });

  it('--schema migrates a schema other than public, and version_schema names the version', async () => {
    await pg.query(`CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int PRIMARY KEY, total int); INSERT INTO billing.invoices VALUES (1, 10)`);
    const file = await migrationFile('01_cents', {
      version_schema: 'v2',
      operations: [
        { rename_column: { table: 'invoices', from: 'total', to: 'total_cents' } },
        { alter_column: { table: 'invoices', column: 'total_cents', type: 'bigint', up: 'total * 100', down: 'total_cents / 100' } },
      ],
    });
    ok(await tandem(pg.url, ['--schema', 'billing', 'start', file]));
    // pgroll's naming: <schema>_<version_schema>.
    const fresh = await versionClient(pg.url, 'billing_v2', 'billing');
    expect((await fresh.query('SELECT id, total_cents FROM invoices')).rows).toEqual([{ id: 1, total_cents: '1000' }]);
    await fresh.query('INSERT INTO invoices VALUES (2, 250)');
    const old = await versionClient(pg.url, null, 'billing');
    expect((await old.query('SELECT total FROM billing.invoices WHERE id = 2')).rows).toEqual([{ total: 2 }]);
    expect((await tandem(pg.url, ['--schema', 'billing', 'latest'])).stdout).toBe('billing_v2\n');
    expect((await tandem(pg.url, ['status'])).stdout).toContain('no active migration');
    ok(await tandem(pg.url, ['--schema', 'billing', 'complete']));
    const db = await pg.client();
    expect(await columnNames(db, 'billing', 'invoices')).toEqual(['id', 'total_cents']);
    expect((await fresh.query('SELECT total_cents FROM invoices ORDER BY id')).rows).toEqual([{ total_cents: '1000' }, { total_cents: '250' }]);
    await Promise.all([fresh.end(), old.end()]);
  });
});
