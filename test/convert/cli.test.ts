/** `tandem convert` from the command line: stdout, -o file or directory, formats, exit codes. */
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadMigrationFile } from '../../src/migration/load.js';
import { runCli } from '../support/cli.js';

let dir: string;
const SQL = 'ALTER TABLE users RENAME COLUMN email TO email_address;\nALTER TABLE users ALTER COLUMN age TYPE bigint;\n';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tandem-convert-cli-'));
  await writeFile(join(dir, '05_users.sql'), SQL);
  await writeFile(join(dir, 'mixed.sql'), 'DROP INDEX a;\nCREATE EXTENSION pgcrypto;\nDROP INDEX b;\n');
  await writeFile(join(dir, 'broken.sql'), 'ALTER TABLE users\n  ADD COLUMN;\n');
});

describe('tandem convert', () => {
  it('prints YAML named after the file, with review notes as comments', async () => {
    const result = await runCli(['convert', join(dir, '05_users.sql')]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain('# REVIEW: "down" turns values');
    expect(YAML.parse(result.stdout)).toEqual({
      name: '05_users',
      operations: [
        { rename_column: { table: 'users', from: 'email', to: 'email_address' } },
        { alter_column: { table: 'users', column: 'age', type: 'bigint', up: 'CAST(age AS bigint)', down: 'age' } },
      ],
    });
  });

  it('writes JSON to -o, notes on stderr, and the file loads as a migration', async () => {
    const out = join(dir, 'out.json');
    const result = await runCli(['convert', join(dir, '05_users.sql'), '-o', out, '--name', '06_renamed']);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('06_renamed: operation 1 (alter_column): REVIEW: "up" converts existing values');
    expect(result.stderr).toContain(`wrote ${out}: 2 REVIEW notes to check`);
    const loaded = await loadMigrationFile(out);
    expect(loaded.migration.name).toBe('06_renamed');
    expect(loaded.migration.operations.map((op) => op.kind)).toEqual(['rename_column', 'alter_column']);
  });

  it('--format json on stdout', async () => {
    const result = await runCli(['convert', '--format', 'json', join(dir, '05_users.sql')]);
    expect(JSON.parse(result.stdout).operations).toHaveLength(2);
  });

  it('writes one file per migration into a directory when raw SQL splits the file', async () => {
    const out = join(dir, 'migrations') + '/';
    const result = await runCli(['convert', join(dir, 'mixed.sql'), '-o', out]);
    expect(result.code).toBe(0);
    expect(await readdir(out)).toEqual(['mixed_1.yaml', 'mixed_2.yaml', 'mixed_3.yaml']);
    const kinds = await Promise.all(['mixed_1', 'mixed_2', 'mixed_3'].map(async (n) => (await loadMigrationFile(join(out, `${n}.yaml`))).migration.operations[0]!.kind));
    expect(kinds).toEqual(['drop_index', 'sql', 'drop_index']);
    expect(await readFile(join(out, 'mixed_1.yaml'), 'utf8')).toContain('# The SQL needs 3 migrations');
  });

  it('refuses to put several migrations in one file (exit 2) and says what to do', async () => {
    const result = await runCli(['convert', join(dir, 'mixed.sql'), '-o', join(dir, 'one.yaml')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('the SQL converts to 3 migrations');
    expect(result.stderr).toContain('hint: give -o a directory');
    const stdout = await runCli(['convert', join(dir, 'mixed.sql')]);
    expect(stdout.code).toBe(0);
    expect(stdout.stderr).toContain('the SQL needs 3 migrations');
  });

  it('reports SQL syntax errors with file, line and column (exit 1)', async () => {
    const result = await runCli(['convert', join(dir, 'broken.sql')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`tandem: ${join(dir, 'broken.sql')}: line 2, column 13: syntax error at or near ";"\n`);
  });

  it('exits 2 for a missing file or a bad format', async () => {
    const missing = await runCli(['convert', join(dir, 'nope.sql')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file');
    expect((await runCli(['convert', '--format', 'toml', join(dir, '05_users.sql')])).code).toBe(2);
    expect((await runCli(['convert'])).code).toBe(2);
  });
});

describe('tandem convert <folder>: a whole migration history', () => {
  /** Writes `files` (path → SQL) under a new folder and returns it. */
  async function history(files: Record<string, string>): Promise<string> {
    const root = await mkdtemp(join(tmpdir(), 'tandem-convert-history-'));
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), text);
    }
    return root;
  }

  /** Converts `source` into a new folder: the files written, in the order `tandem migrate` runs them, and stderr. */
  async function convertFolder(source: string): Promise<{ files: string[]; stderr: string; out: string }> {
    const out = await mkdtemp(join(tmpdir(), 'tandem-convert-out-'));
    const result = await runCli(['convert', source, '-o', `${out}/`]);
    expect(result.code, result.stderr).toBe(0);
    return { files: (await readdir(out)).sort(), stderr: result.stderr, out };
  }

  it('Prisma: each migration.sql takes its folder name', async () => {
    const source = await history({
      '20240101000000_init/migration.sql': 'CREATE TABLE "User" (id serial PRIMARY KEY);',
      '20240202000000_add_name/migration.sql': 'ALTER TABLE "User" ADD COLUMN name text;',
      'migration_lock.toml': 'provider = "postgresql"',
    });
    const { files, stderr, out } = await convertFolder(source);
    expect(files).toEqual(['20240101000000_init.yaml', '20240202000000_add_name.yaml']);
    expect(stderr).toContain('converted 2 prisma migrations into 2');
    expect((await loadMigrationFile(join(out, files[1]!))).migration.name).toBe('20240202000000_add_name');
    // One file converted alone is named the same way.
    const one = await runCli(['convert', join(source, '20240202000000_add_name', 'migration.sql')]);
    expect(YAML.parse(one.stdout).name).toBe('20240202000000_add_name');
  });

  it("Drizzle: the journal's order, files it does not list left out", async () => {
    const source = await history({
      '0000_first.sql': 'CREATE TABLE a (id int PRIMARY KEY);',
      '0001_second.sql': 'ALTER TABLE a ADD COLUMN b int;',
      'scratch.sql': 'SELECT 1;',
      'meta/_journal.json': JSON.stringify({ version: '7', dialect: 'postgresql', entries: [{ idx: 1, tag: '0001_second' }, { idx: 0, tag: '0000_first' }] }),
    });
    const { files, stderr } = await convertFolder(source);
    expect(files).toEqual(['0000_first.yaml', '0001_second.yaml']);
    expect(stderr).toContain('skipped scratch.sql: not in meta/_journal.json');
  });

  it('Flyway: version order (V2 before V10), padded so that file names sort the same way; repeatables left out', async () => {
    const source = await history({
      'V1__init.sql': 'CREATE TABLE a (id int PRIMARY KEY);',
      'V2__add_b.sql': 'ALTER TABLE a ADD COLUMN b int;',
      'V10__add_c.sql': 'ALTER TABLE a ADD COLUMN c int;',
      'V2.1__add_d.sql': 'ALTER TABLE a ADD COLUMN d int;',
      'R__views.sql': 'CREATE OR REPLACE VIEW v AS SELECT 1;',
    });
    const { files, stderr } = await convertFolder(source);
    expect(files).toEqual(['V0001_0000__init.yaml', 'V0002_0000__add_b.yaml', 'V0002_0001__add_d.yaml', 'V0010_0000__add_c.yaml']);
    expect(stderr).toContain('skipped R__views.sql: a repeatable migration');
  });

  it('numbered .sql files in natural order; names that would sort otherwise are numbered', async () => {
    const source = await history({
      '2_add_b.sql': 'ALTER TABLE a ADD COLUMN b int;',
      '10_add_c.sql': 'ALTER TABLE a ADD COLUMN c int;',
      '1_init.sql': 'CREATE TABLE a (id int PRIMARY KEY);',
    });
    const { files, stderr } = await convertFolder(source);
    expect(files).toEqual(['0001_1_init.yaml', '0002_2_add_b.yaml', '0003_10_add_c.yaml']);
    expect(stderr).toContain('the migration names are numbered');
  });

  it('a file that becomes several migrations keeps them in order among the others', async () => {
    const statements = Array.from({ length: 11 }, (_, i) => `CREATE INDEX CONCURRENTLY i${i} ON a (lower(x${i}));`).join('\n');
    const source = await history({ '0000_a.sql': 'CREATE TABLE a (id int PRIMARY KEY);', '0001_b.sql': statements, '0002_c.sql': 'ALTER TABLE a ADD COLUMN c int;' });
    const { files } = await convertFolder(source);
    expect(files.slice(0, 3)).toEqual(['0000_a.yaml', '0001_b_01.yaml', '0001_b_02.yaml']);
    expect(files.slice(-3)).toEqual(['0001_b_10.yaml', '0001_b_11.yaml', '0002_c.yaml']);
  });

  it('refuses a folder without -o, and --name', async () => {
    const source = await history({ '1.sql': 'CREATE TABLE a (id int);' });
    expect(await runCli(['convert', source])).toMatchObject({ code: 2, stderr: expect.stringContaining('converting a folder writes one file per migration') });
    expect(await runCli(['convert', source, '-o', `${source}/out/`, '--name', 'x'])).toMatchObject({ code: 2 });
  });
});
