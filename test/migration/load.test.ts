import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TandemError } from '../../src/errors.js';
import { loadMigrationFile, parseMigration } from '../../src/migration/load.js';

function parseJson(document: unknown, file = '03_example.json') {
  return parseMigration(JSON.stringify(document), { file, format: 'json' });
}

function failure(run: () => unknown): TandemError {
  try {
    run();
  } catch (error) {
    if (error instanceof TandemError) return error;
    throw error;
  }
  throw new Error('expected a TandemError');
}

describe('loading migrations', () => {
  it('reads JSON, YAML and YML with the same result and digest', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-load-'));
    const document = { operations: [{ rename_column: { table: 'users', from: 'email', to: 'email_address' } }] };
    await writeFile(join(dir, '02_rename.json'), JSON.stringify(document, null, 2));
    await writeFile(join(dir, '02_rename.yaml'), 'operations:\n  - rename_column:\n      table: users\n      from: email\n      to: email_address\n');
    await writeFile(join(dir, '02_rename.yml'), 'operations: [{rename_column: {to: email_address, from: email, table: users}}]\n');
    const loaded = await Promise.all(['json', 'yaml', 'yml'].map((ext) => loadMigrationFile(join(dir, `02_rename.${ext}`))));
    for (const one of loaded) {
      expect(one.migration).toEqual({
        name: '02_rename',
        operations: [{ kind: 'rename_column', body: { table: 'users', from: 'email', to: 'email_address' } }],
      });
    }
    expect(new Set(loaded.map((l) => l.digest)).size).toBe(1);
  });

  it('takes the name from the name field before the file name', () => {
    const loaded = parseJson({ name: 'custom', version_schema: 'v_custom', operations: [{ drop_table: { name: 't' } }] });
    expect(loaded.migration.name).toBe('custom');
    expect(loaded.migration.versionSchema).toBe('v_custom');
  });

  it('names the operation, its kind and the field of a mistyped value', () => {
    const error = failure(() =>
      parseJson({ operations: [{ drop_table: { name: 'a' } }, { add_column: { table: 'users', column: { name: 'age', type: 42 } } }] }),
    );
    expect(error).toMatchObject({ file: '03_example.json', operation: 1, kind: 'add_column', field: 'column.type', exitCode: 1 });
    expect(error.message).toBe('must be a string, got number 42');
  });

  it('reports a missing required field', () => {
    const error = failure(() => parseJson({ operations: [{ rename_column: { table: 'users', from: 'a' } }] }));
    expect(error).toMatchObject({ operation: 0, kind: 'rename_column', field: 'to' });
    expect(error.message).toBe('is required (string)');
  });

  it('rejects unknown operations with a suggestion', () => {
    const error = failure(() => parseJson({ operations: [{ add_colum: { table: 'users' } }] }));
    expect(error).toMatchObject({ code: 'operation_unknown', operation: 0 });
    expect(error.message).toBe('unknown operation "add_colum"');
    expect(error.hint).toBe('did you mean "add_column"?');
  });

  it('rejects unknown fields, bad enum values and two kinds in one item', () => {
    expect(failure(() => parseJson({ operations: [{ drop_table: { name: 't', cascade: true } }] })).message).toBe('unknown field "cascade"');
    const enumError = failure(() =>
      parseJson({ operations: [{ create_index: { name: 'i', table: 't', columns: [{ column: 'a' }], method: 'bitmap' } }] }),
    );
    expect(enumError.field).toBe('method');
    expect(enumError.message).toMatch(/^must be one of "btree", "hash"/);
    const twoKinds = failure(() => parseJson({ operations: [{ drop_table: { name: 't' }, drop_index: { name: 'i' } }] }));
    expect(twoKinds.code).toBe('operation_shape');
  });

  it('reports syntax errors with their position', () => {
    const error = failure(() => parseMigration('operations:\n  - drop_table: {name: t\n', { file: 'x.yaml', format: 'yaml' }));
    expect(error.code).toBe('migration_syntax');
    expect(error.message).toMatch(/not valid YAML at line \d+/);
    expect(failure(() => parseMigration('{"operations": [', { file: 'x.json', format: 'json' })).message).toMatch(/^not valid JSON/);
  });

  it('refuses unknown top-level fields, empty operation lists and other file types', async () => {
    expect(failure(() => parseJson({ operations: [], nme: 'x' })).message).toBe('unknown field "nme"');
    expect(failure(() => parseJson({ operations: [] })).code).toBe('migration_empty');
    await expect(loadMigrationFile('migration.sql')).rejects.toMatchObject({ code: 'migration_file_type' });
    await expect(loadMigrationFile('/nonexistent/01.json')).rejects.toMatchObject({ message: 'no such file' });
  });
});
