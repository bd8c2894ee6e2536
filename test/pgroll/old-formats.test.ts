import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseMigration } from '../../src/migration/load.js';
import { upgradeMigration } from '../../src/migration/upgrade.js';
import { usePostgres } from '../support/harness.js';
import { columnNames, migrationFolder as folder, ok, tandem } from '../support/migrations.js';

/** Files as older pgroll releases wrote them, one per format change pgroll made. */
const OLD_FILES: Record<string, string> = {
  '01_users.yaml': 'operations:\n  - create_table: {name: users, columns: [{name: id, type: int, pk: true}, {name: email, type: text, nullable: true}, {name: nick, type: text, nullable: true}, {name: age, type: int, nullable: true, check: {name: age_positive, constraint: age > 0}}]}\n',
  // pgroll before 0.10: index columns as a list of names.
  '02_index_list.json': JSON.stringify({ name: '02_index_list', operations: [{ create_index: { name: 'ix_email_nick', table: 'users', columns: ['email', 'nick'] } }] }),
  // pgroll 0.10 to 0.15: a map of name to settings, in the file's order.
  '03_index_map.yaml': 'operations:\n  - create_index:\n      name: ix_nick_email\n      table: users\n      columns:\n        nick: {}\n        email: {sort: DESC}\n',
  // pgroll before 0.9: a rename inside alter_column, alone and with another change.
  '04_rename.json': JSON.stringify({ operations: [{ alter_column: { table: 'users', column: 'nick', name: 'nickname' } }] }),
  '05_rename_and_type.json': JSON.stringify({ operations: [{ alter_column: { table: 'users', column: 'email', name: 'mail', type: 'varchar(200)', up: 'email', down: 'mail' } }] }),
  // pgroll before 0.3: not_null.
  '06_not_null.yaml': 'operations:\n  - alter_column: {table: users, column: nickname, not_null: true, up: "COALESCE(nickname, \'anon\')", down: nickname}\n',
  // pgroll before 0.8: drop_constraint named the column.
  '07_drop_check.json': JSON.stringify({ operations: [{ drop_constraint: { table: 'users', column: 'age', name: 'age_positive', up: 'age', down: 'age' } }] }),
};

describe('files written for older pgroll releases: reading them', () => {
  it('rewrites each old shape into the current one, saying what it was', () => {
    const list = upgradeMigration({ operations: [{ create_index: { name: 'i', table: 't', columns: ['a', 'b'] } }] });
    expect(list.document).toEqual({ operations: [{ create_index: { name: 'i', table: 't', columns: [{ column: 'a' }, { column: 'b' }] } }] });
    expect(list.upgrades).toEqual([{ operation: 0, kind: 'create_index', change: 'columns as a list of names (pgroll before 0.10)' }]);

    const map = upgradeMigration({ operations: [{ create_index: { name: 'i', table: 't', columns: { b: { sort: 'DESC' }, a: {} } } }] });
    expect(map.document).toEqual({ operations: [{ create_index: { name: 'i', table: 't', columns: [{ column: 'b', sort: 'DESC' }, { column: 'a' }] } }] });

    const rename = upgradeMigration({ operations: [{ sql: { up: 'SELECT 1' } }, { alter_column: { table: 't', column: 'a', name: 'b', nullable: false, up: 'a', down: 'b' } }] });
    expect(rename.document).toEqual({
      operations: [
        { sql: { up: 'SELECT 1' } },
        { alter_column: { table: 't', column: 'a', nullable: false, up: 'a', down: 'b' } },
        { rename_column: { table: 't', from: 'a', to: 'b' } },
      ],
    });
    expect(rename.upgrades.map((u) => u.operation)).toEqual([1]);

    expect(upgradeMigration({ operations: [{ alter_column: { table: 't', column: 'a', not_null: true } }] }).document).toEqual({
      operations: [{ alter_column: { table: 't', column: 'a', nullable: false } }],
    });
    expect(upgradeMigration({ operations: [{ drop_constraint: { table: 't', column: 'a', name: 'c' } }] }).document).toEqual({
      operations: [{ drop_constraint: { table: 't', name: 'c' } }],
    });
  });

  it('leaves a current file alone, so its digest is what it always was', () => {
    const text = '{"operations": [{"create_index": {"name": "i", "table": "t", "columns": [{"column": "a"}]}}]}';
    const current = { operations: [{ create_index: { name: 'i', table: 't', columns: [{ column: 'a' }] } }] };
    expect(upgradeMigration(current)).toEqual({ document: current, upgrades: [] });
    const loaded = parseMigration(text, { file: '01_i.json', format: 'json' });
    expect(loaded.upgrades).toEqual([]);
    const old = parseMigration('{"operations": [{"create_index": {"name": "i", "table": "t", "columns": ["a"]}}]}', { file: '01_i.json', format: 'json' });
    expect(old.digest).toBe(loaded.digest);
  });
});

describe('files written for older pgroll releases: applying and updating them', () => {
  const pg = usePostgres();

  it('migrate applies an old folder as it is; tandem update rewrites it and the history still matches', async () => {
    const dir = await folder(OLD_FILES);
    const applied = await tandem(pg.url, ['migrate', dir, '--complete']);
    ok(applied);
    expect(applied.stderr).toContain(`note: ${join(dir, '02_index_list.json')} is in an older pgroll format, read as the current one (operation 0 (create_index): columns as a list of names (pgroll before 0.10)); tandem update ${dir} rewrites it`);
    const db = await pg.client();
    expect(await columnNames(db, 'public', 'users')).toEqual(['id', 'mail', 'nickname', 'age']);
    const { rows: indexes } = await db.query<{ name: string; def: string }>(
      `SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE tablename = 'users' AND indexname LIKE 'ix_%' ORDER BY 1`,
    );
    expect(indexes.map((i) => i.def.replace(/^.* USING /, ''))).toEqual(['btree (mail, nickname)', 'btree (nickname, mail DESC)']);
    const { rows: types } = await db.query(`SELECT format_type(atttypid, atttypmod) AS type, attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname IN ('mail', 'nickname') ORDER BY attname`);
    expect(types).toEqual([{ type: 'character varying(200)', attnotnull: false }, { type: 'text', attnotnull: true }]);
    const { rows: checks } = await db.query(`SELECT conname FROM pg_constraint WHERE conrelid = 'users'::regclass AND contype = 'c' AND conname = 'age_positive'`);
    expect(checks).toEqual([]);

    const update = await tandem(pg.url, ['update', dir]);
    ok(update);
    expect(update.stdout).toContain(`updated ${join(dir, '04_rename.json')}: operation 0 (alter_column): name renames the column (pgroll before 0.9; rename_column since)`);
    expect(update.stdout).not.toContain('01_users');
    expect(JSON.parse(await readFile(join(dir, '04_rename.json'), 'utf8'))).toEqual({ operations: [{ rename_column: { table: 'users', from: 'nick', to: 'nickname' } }] });
    expect(await readFile(join(dir, '03_index_map.yaml'), 'utf8')).toBe(
      'operations:\n  - create_index:\n      name: ix_nick_email\n      table: users\n      columns:\n        - column: nick\n        - column: email\n          sort: DESC\n',
    );
    // The migration name a file sets stays: it is the name in the history.
    expect(JSON.parse(await readFile(join(dir, '02_index_list.json'), 'utf8')).name).toBe('02_index_list');

    expect((await tandem(pg.url, ['update', dir])).stdout).toBe('every migration file is in the current format\n');
    const again = await tandem(pg.url, ['migrate', dir]);
    ok(again);
    expect(again.stdout).toContain('up to date: 7 migrations applied');
    expect(again.stderr).toBe('');
  });

  it('update --json turns an updated YAML file into JSON; a broken file stops it before anything is written', async () => {
    const dir = await folder({ '03_index_map.yaml': OLD_FILES['03_index_map.yaml']!, '04_rename.json': OLD_FILES['04_rename.json']! });
    ok(await tandem(pg.url, ['update', dir, '--json']));
    expect((await readdir(dir)).sort()).toEqual(['03_index_map.json', '04_rename.json']);
    expect(JSON.parse(await readFile(join(dir, '03_index_map.json'), 'utf8')).operations[0].create_index.columns).toEqual([{ column: 'nick' }, { column: 'email', sort: 'DESC' }]);

    const broken = await folder({ '01_old.json': OLD_FILES['04_rename.json']!, '02_bad.yaml': 'operations:\n  - add_colum: {}\n' });
    const refused = await tandem(pg.url, ['update', broken]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('02_bad.yaml: operation 0: unknown operation "add_colum"');
    expect(await readFile(join(broken, '01_old.json'), 'utf8')).toBe(OLD_FILES['04_rename.json']);
  });
});
