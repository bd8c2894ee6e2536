import { describe, expect, it } from 'vitest';
import { usePostgres } from './support/harness.js';
import { runCli } from './support/cli.js';
import { migrationFile } from './support/migrations.js';

const createUsers = [{ create_table: { name: 'users', columns: [{ name: 'id', type: 'int', pk: true }, { name: 'email', type: 'text', nullable: true }] } }];
const checkEmail = [{ alter_column: { table: 'users', column: 'email', check: { name: 'email_has_at', constraint: "email LIKE '%@%'" }, up: "CASE WHEN email LIKE '%@%' THEN email ELSE email || '@unknown' END", down: 'email' } }];

describe('--log-format', () => {
  const pg = usePostgres();

  it('text: one line per step with its time, no JSON', async () => {
    const users = await runCli(['--postgres-url', pg.url, '--log-format', 'text', 'start', await migrationFile('01_users', { operations: createUsers }), '--complete']);
    expect(users.code).toBe(0);
    const check = await runCli(['--postgres-url', pg.url, '--log-format', 'text', 'start', await migrationFile('02_check', { operations: checkEmail })]);
    expect(check.code).toBe(0);
    const lines = check.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('starting 02_check');
    const steps = lines.filter((line) => line.startsWith('✓ '));
    expect(steps.length).toBeGreaterThan(2);
    steps.forEach((line, i) => expect(line).toMatch(new RegExp(`^✓ ${i + 1}/${steps.length} \\S.*  \\d+(\\.\\d)? m?s$`)));
    expect(steps.some((line) => line.includes('email_has_at'))).toBe(true);
    expect(lines.some((line) => line.startsWith('{'))).toBe(false);
    expect(lines.at(-1)).toBe('02_check is active: version schema public_02_check is ready');
  });

  it('json stays the default off a terminal; an unknown format is bad usage', async () => {
    const users = await runCli(['--postgres-url', pg.url, 'start', await migrationFile('01_users', { operations: createUsers })]);
    expect(users.code).toBe(0);
    const records = users.stderr.trimEnd().split('\n').map((line) => JSON.parse(line) as { msg: string; step?: number });
    expect(records.some((record) => record.step === 1)).toBe(true);

    const bad = await runCli(['--postgres-url', pg.url, '--log-format', 'xml', 'rollback']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown log format "xml"');
  });
});
