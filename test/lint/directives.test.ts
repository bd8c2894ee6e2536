import { describe, expect, it } from 'vitest';
import { lintSql } from '../../src/lint/lint.js';

const options = { pgVersion: 14, assumeInTransaction: false, disabled: new Set<string>() };
const rules = async (sql: string, opts = options) => (await lintSql(sql, 'd.sql', opts)).map((f) => `${f.rule}@${f.line}`);

describe('disabling rules', () => {
  it('a disable comment covers the next statement only', async () => {
    const sql = [
      "SET lock_timeout = '1s';",
      '-- tandem-lint-disable dropping-column -- unused since v3',
      'ALTER TABLE users DROP COLUMN nickname;',
      'ALTER TABLE users DROP COLUMN avatar;',
    ].join('\n');
    expect(await rules(sql)).toEqual(['dropping-column@4']);
  });

  it('takes several rules, separated by commas or spaces, and block comments', async () => {
    const sql = [
      "SET lock_timeout = '1s';",
      '/* tandem-lint-disable dropping-column,renaming-column */ ALTER TABLE users DROP COLUMN a;',
      '-- tandem-lint-disable renaming-column dropping-table',
      'DROP TABLE old;',
    ].join('\n');
    expect(await rules(sql)).toEqual([]);
  });

  it('a comment inside a statement covers that statement', async () => {
    const sql = "SET lock_timeout = '1s';\nALTER TABLE users -- tandem-lint-disable dropping-column\n  DROP COLUMN a;";
    expect(await rules(sql)).toEqual([]);
  });

  it('without rule names it covers every rule of the next statement', async () => {
    const sql = '-- tandem-lint-disable\nALTER TABLE users DROP COLUMN a;\nALTER TABLE users DROP COLUMN b;';
    // lock_timeout is reported at the next statement that takes a lock, since the first one was excused.
    expect(await rules(sql)).toEqual(['missing-lock-timeout@3', 'dropping-column@3']);
  });

  it('the file form covers the whole file wherever it stands', async () => {
    const sql = 'ALTER TABLE users DROP COLUMN a;\nDROP TABLE old;\n-- tandem-lint-disable-file dropping-column, missing-lock-timeout';
    expect(await rules(sql)).toEqual(['dropping-table@2']);
    expect(await rules('-- tandem-lint-disable-file\nDROP TABLE old;')).toEqual([]);
  });

  it('reports unknown rule names and directives', async () => {
    const sql = "SET lock_timeout = '1s';\n-- tandem-lint-disable droping-column\nALTER TABLE users DROP COLUMN a;\n-- tandem-lint-enable x\n";
    expect(await rules(sql)).toEqual(['invalid-directive@2', 'dropping-column@3', 'invalid-directive@4']);
  });

  it('--disable switches rules off everywhere', async () => {
    const sql = 'ALTER TABLE users DROP COLUMN a;\nDROP TABLE old;';
    expect(await rules(sql, { ...options, disabled: new Set(['missing-lock-timeout', 'dropping-table']) })).toEqual(['dropping-column@1']);
  });
});
