import { describe, expect, it } from 'vitest';
import { lintSql } from '../../src/lint/lint.js';
import { parseSql, SqlSyntaxError } from '../../src/sqlparse/parse.js';
import { SourceText } from '../../src/sqlparse/source.js';

describe('parsing SQL files', () => {
  it('locates statements past leading comments and multi-byte text', async () => {
    const parsed = await parseSql("-- header\nINSERT INTO t VALUES ('héllo');\n/* c */ ALTER TABLE ünïcode ADD COLUMN a int;", 'x.sql');
    expect(parsed.statements.map((s) => s.kind)).toEqual(['InsertStmt', 'AlterTableStmt']);
    const second = parsed.statements[1]!;
    expect(parsed.source.positionOfByte(second.start)).toEqual({ line: 3, column: 9 });
    expect(parsed.source.sliceBytes(second.start, second.end)).toBe('ALTER TABLE ünïcode ADD COLUMN a int');
  });

  it('accepts empty files and files of comments', async () => {
    expect((await parseSql('', 'empty.sql')).statements).toEqual([]);
    expect((await parseSql('-- nothing here\n', 'c.sql')).statements).toEqual([]);
  });

  it('reports a syntax error with its line and column, counting characters not bytes', async () => {
    const error = await parseSql("SELECT 'ééé😀';\nALTER TABEL users ADD COLUMN a int;", 'broken.sql').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SqlSyntaxError);
    expect((error as SqlSyntaxError).position).toEqual({ line: 2, column: 7 });
    expect((error as SqlSyntaxError).reason).toBe('syntax error at or near "TABEL"');
  });

  it('lint turns a syntax error into a finding instead of failing', async () => {
    const findings = await lintSql('SET lock_timeout = 1;\nCREATE INDEX ON;', 'broken.sql');
    expect(findings).toEqual([expect.objectContaining({ rule: 'syntax-error', file: 'broken.sql', line: 2, column: 16, severity: 'error' })]);
  });

  it('maps byte offsets to UTF-16 columns', () => {
    const source = new SourceText('a😀b\nçd');
    expect(source.positionOfByte(Buffer.byteLength('a😀'))).toEqual({ line: 1, column: 4 });
    expect(source.positionOfByte(Buffer.byteLength('a😀b\nç'))).toEqual({ line: 2, column: 2 });
    expect(source.lineText(2)).toBe('çd');
  });
});
