/** `tandem convert` from the command line: stdout, -o file or directory, formats, exit codes. */
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
