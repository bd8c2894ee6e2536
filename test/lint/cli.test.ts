/** `tandem lint` from the command line: formats, exit codes, directories, usage errors. */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

let dir: string;
const SAFE = "SET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n";
const UNSAFE = "SET lock_timeout = '2s';\nALTER TABLE users DROP COLUMN nickname;\nALTER TABLE users ADD COLUMN code varchar(8);\n";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tandem-lint-'));
  await mkdir(join(dir, 'migrations', 'nested'), { recursive: true });
  await writeFile(join(dir, 'migrations', '002_drop.sql'), UNSAFE);
  await writeFile(join(dir, 'migrations', '001_index.sql'), SAFE);
  await writeFile(join(dir, 'migrations', 'nested', '003_more.SQL'), 'VACUUM FULL users;\n');
  await writeFile(join(dir, 'migrations', 'README.md'), '# not SQL\n');
  await writeFile(join(dir, 'safe.sql'), SAFE);
  await writeFile(join(dir, 'unsafe.sql'), UNSAFE);
  await writeFile(join(dir, 'broken.sql'), 'ALTER TABLE users ADD COLUMN;\n');
});

describe('tandem lint', () => {
  it('exits 0 and says so when nothing is found', async () => {
    const result = await runCli(['lint', join(dir, 'safe.sql')]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toBe('no problems found (1 file checked)\n');
  });

  it('prints file:line:col, rule, source line, why and fix, and exits 1', async () => {
    const file = join(dir, 'unsafe.sql');
    const result = await runCli(['lint', file]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`${file}:2:19: error dropping-column: column "nickname" is dropped from users`);
    expect(result.stdout).toContain('     2 | ALTER TABLE users DROP COLUMN nickname;\n       |                   ^\n');
    expect(result.stdout).toContain('  fix: Stop using the column');
    expect(result.stdout).toContain(`${file}:3:35: warning prefer-text: column "code" is varchar(8)`);
    expect(result.stdout).toContain('1 error, 1 warning (1 file checked)');
    expect(result.stderr).toBe('tandem: 2 problems found\n');
    // Not a terminal: no colour codes.
    expect(result.stdout).not.toContain('\x1b[');
  });

  it('scans directories recursively for .sql files in name order', async () => {
    const result = await runCli(['lint', '--format', 'json', join(dir, 'migrations')]);
    const report = JSON.parse(result.stdout) as { files: number; findings: { file: string; rule: string }[] };
    expect(report.files).toBe(3);
    expect(report.findings.map((f) => [f.file.slice(dir.length + 1), f.rule])).toEqual([
      ['migrations/002_drop.sql', 'dropping-column'],
      ['migrations/002_drop.sql', 'prefer-text'],
      ['migrations/nested/003_more.SQL', 'missing-lock-timeout'],
      ['migrations/nested/003_more.SQL', 'vacuum-full'],
    ]);
  });

  it('writes JSON findings with every field', async () => {
    const result = await runCli(['lint', '--format', 'json', join(dir, 'unsafe.sql')]);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as { findings: unknown[] };
    expect(report.findings[0]).toEqual({
      rule: 'dropping-column',
      severity: 'error',
      file: join(dir, 'unsafe.sql'),
      line: 2,
      column: 19,
      message: 'column "nickname" is dropped from users',
      why: expect.stringContaining('already running'),
      fix: expect.stringContaining('drop_column'),
    });
  });

  it('writes SARIF 2.1.0 with rule metadata and locations', async () => {
    const result = await runCli(['lint', '--format', 'sarif', join(dir, 'unsafe.sql')]);
    const sarif = JSON.parse(result.stdout) as {
      version: string;
      runs: { tool: { driver: { name: string; rules: { id: string }[] } }; results: Record<string, unknown>[] }[];
    };
    expect(sarif.version).toBe('2.1.0');
    const run = sarif.runs[0]!;
    expect(run.tool.driver.name).toBe('tandem lint');
    expect(run.tool.driver.rules.map((r) => r.id)).toContain('dropping-column');
    expect(run.results[0]).toMatchObject({
      ruleId: 'dropping-column',
      level: 'error',
      locations: [{ physicalLocation: { artifactLocation: { uri: join(dir, 'unsafe.sql') }, region: { startLine: 2, startColumn: 19 } } }],
    });
    expect(run.tool.driver.rules[(run.results[0] as { ruleIndex: number }).ruleIndex]!.id).toBe('dropping-column');
    expect(run.results[1]).toMatchObject({ ruleId: 'prefer-text', level: 'warning' });
  });

  it('writes GitHub Actions annotations, escaped', async () => {
    const result = await runCli(['lint', '--format', 'github', join(dir, 'unsafe.sql')]);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      new RegExp(`^::error file=${join(dir, 'unsafe.sql')},line=2,col=19,title=tandem lint%3A dropping-column::column "nickname" is dropped from users%0A`),
    );
    expect(lines[1]).toMatch(/^::warning file=.*,line=3,col=35,title=tandem lint%3A prefer-text::/);
  });

  it('reports a syntax error as a finding with its position (exit 1)', async () => {
    const result = await runCli(['lint', join(dir, 'broken.sql')]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`${join(dir, 'broken.sql')}:1:29: error syntax-error: syntax error at or near ";"`);
  });

  it('honours --disable, --pg-version and --assume-in-transaction', async () => {
    const file = join(dir, 'unsafe.sql');
    expect((await runCli(['lint', '--disable', 'dropping-column,prefer-text', file])).code).toBe(0);
    const enumFile = join(dir, 'enum.sql');
    await writeFile(enumFile, "ALTER TYPE mood ADD VALUE 'meh';\n");
    expect((await runCli(['lint', '--assume-in-transaction', enumFile])).code).toBe(0);
    const old = await runCli(['lint', '--assume-in-transaction', '--pg-version', '11', '--format', 'json', enumFile]);
    expect(JSON.parse(old.stdout).findings.map((f: { rule: string }) => f.rule)).toEqual(['add-enum-value-in-transaction']);
  });

  it('lists its rules', async () => {
    const result = await runCli(['lint', '--list-rules']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^adding-required-column\s+error\s+ADD COLUMN/m);
    expect(result.stdout.trim().split('\n').length).toBe(26);
  });

  it('exits 2 for bad usage', async () => {
    const unknownRule = await runCli(['lint', '--disable', 'droping-column', join(dir, 'safe.sql')]);
    expect(unknownRule.code).toBe(2);
    expect(unknownRule.stderr).toContain('unknown rule "droping-column" (did you mean "dropping-column"?)');
    expect((await runCli(['lint', '--format', 'xml', join(dir, 'safe.sql')])).code).toBe(2);
    expect((await runCli(['lint', '--pg-version', 'latest', join(dir, 'safe.sql')])).code).toBe(2);
    const missing = await runCli(['lint', join(dir, 'nope.sql')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file or directory');
    expect((await runCli(['lint'])).code).toBe(2);
  });
});

describe('text report colour', () => {
  it('colours severity and caret only when asked (a terminal without NO_COLOR)', async () => {
    const { formatReport } = await import('../../src/lint/report/index.js');
    const finding = { rule: 'vacuum-full', severity: 'error' as const, file: 'a.sql', line: 1, column: 3, message: 'm', why: 'w', fix: 'f' };
    const input = { findings: [finding], files: 1, lines: () => '\tVACUUM FULL t;', version: '0' };
    const coloured = formatReport('text', { ...input, color: true });
    expect(coloured).toContain('\x1b[31merror\x1b[39m');
    expect(formatReport('text', { ...input, color: false })).not.toContain('\x1b[');
    // A tab before the column stays a tab under the source line, so the caret lines up.
    expect(formatReport('text', { ...input, color: false })).toContain('       | \t ^');
  });
});
