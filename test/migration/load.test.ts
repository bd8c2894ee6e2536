import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadMigrationFile, MAX_MIGRATION_FILE_BYTES, MAX_MIGRATION_OPERATIONS, parseMigration } from '../../src/migration/load.js';
import { expectError } from '../support/errors.js';

function parseJson(document: unknown, file = '03_example.json') {
  return parseMigration(JSON.stringify(document), { file, format: 'json' });
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

  it('names the operation, its kind and the field of a mistyped value', async () => {
    await expectError(
      () => parseJson({ operations: [{ drop_table: { name: 'a' } }, { add_column: { table: 'users', column: { name: 'age', type: 42 } } }] }),
      { kind: 'migration_invalid', message: 'must be a string, got number 42' },
      { file: '03_example.json', operation: 1, kind: 'add_column', field: 'column.type', exitCode: 1 },
    );
  });

  it('reports a missing required field', async () => {
    await expectError(() => parseJson({ operations: [{ rename_column: { table: 'users', from: 'a' } }] }), { kind: 'migration_invalid', message: 'is required (string)' }, {
      operation: 0,
      kind: 'rename_column',
      field: 'to',
    });
  });

  it('rejects unknown operations with a suggestion', async () => {
    await expectError(() => parseJson({ operations: [{ add_colum: { table: 'users' } }] }), { kind: 'operation_unknown', name: 'add_colum', suggestion: 'add_column' }, { operation: 0 });
  });

  it('rejects unknown fields, bad enum values and two kinds in one item', async () => {
    await expectError(() => parseJson({ operations: [{ drop_table: { name: 't', cascade: true } }] }), { kind: 'migration_invalid', message: 'unknown field "cascade"' });
    await expectError(
      () => parseJson({ operations: [{ create_index: { name: 'i', table: 't', columns: [{ column: 'a' }], method: 'bitmap' } }] }),
      { kind: 'migration_invalid', message: expect.stringMatching(/^must be one of "btree", "hash"/) },
      { field: 'method' },
    );
    await expectError(() => parseJson({ operations: [{ drop_table: { name: 't' }, drop_index: { name: 'i' } }] }), { kind: 'operation_shape', keys: ['drop_table', 'drop_index'] });
  });

  it('reports syntax errors with their position', async () => {
    await expectError(() => parseMigration('operations:\n  - drop_table: {name: t\n', { file: 'x.yaml', format: 'yaml' }), {
      kind: 'migration_syntax',
      format: 'yaml',
      line: expect.any(Number),
    });
    await expectError(() => parseMigration('{"operations": [', { file: 'x.json', format: 'json' }), { kind: 'migration_syntax', format: 'json' });
  });

  it('refuses unknown top-level fields, empty operation lists and other file types', async () => {
    await expectError(() => parseJson({ operations: [], nme: 'x' }), { kind: 'migration_invalid', message: 'unknown field "nme"' });
    await expectError(() => parseJson({ operations: [] }), { kind: 'migration_empty' });
    await expectError(loadMigrationFile('migration.sql'), { kind: 'migration_file_type', extension: '.sql' });
    await expectError(loadMigrationFile('/nonexistent/01.json'), { kind: 'migration_file_unreadable', errno: 'ENOENT' });
  });

  it('refuses control characters and "@" in the migration name and version_schema, naming file, field and character', async () => {
    const operations = [{ drop_table: { name: 't' } }];
    const why = 'control characters and line breaks are not allowed';
    await expectError(
      () => parseJson({ name: '02_add\nemail', operations }),
      { kind: 'migration_name_invalid', value: '02_add\nemail', source: 'name', character: 'U+000A (line feed)', position: 7, why },
      { file: '03_example.json', field: 'name', exitCode: 1 },
    );
    await expectError(
      () => parseJson({ version_schema: 'public_02@v2', operations }),
      { kind: 'migration_name_invalid', value: 'public_02@v2', source: 'version_schema', character: '"@"', position: 10 },
      { field: 'version_schema' },
    );

    for (const [name, character] of [['a\u0000b', 'U+0000 (NUL)'], ['a\tb', 'U+0009 (tab)'], ['a\u007fb', 'U+007F (delete)'], ['a\u2028b', 'U+2028 (line separator)'], ['a\u001bb', 'U+001B (escape)']]) {
      await expectError(() => parseJson({ name, operations }), { kind: 'migration_name_invalid', character, position: 2 });
    }

    // From the file name (a real file): the error says so (and its hint suggests renaming it).
    const dir = await mkdtemp(join(tmpdir(), 'tandem-load-'));
    const file = join(dir, '02_add\remail.json');
    await writeFile(file, JSON.stringify({ operations }));
    await expectError(
      loadMigrationFile(file),
      { kind: 'migration_name_invalid', value: '02_add\remail', source: 'file name', character: 'U+000D (carriage return)', position: 7, why },
      { file, field: undefined },
    );
  });

  it('keeps accepting the names pgroll users write', () => {
    for (const name of ['01_initial', '20240101120000_add-email', 'v1.2.3', 'ünïcode_名前', 'with space']) {
      expect(parseJson({ name, operations: [{ drop_table: { name: 't' } }] }).migration.name).toBe(name);
    }
    expect(parseJson({ version_schema: 'my_version_schema', operations: [{ drop_table: { name: 't' } }] }).migration.versionSchema).toBe('my_version_schema');
  });

  it(`refuses a file larger than ${MAX_MIGRATION_FILE_BYTES} bytes before parsing it, naming the file and the limit`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-load-'));
    const file = join(dir, '01_huge.json');
    // Valid JSON, padded with spaces past the limit.
    const body = JSON.stringify({ operations: [{ drop_table: { name: 't' } }] });
    await writeFile(file, body + ' '.repeat(MAX_MIGRATION_FILE_BYTES + 1 - body.length));
    await expectError(loadMigrationFile(file), { kind: 'migration_file_too_large', bytes: MAX_MIGRATION_FILE_BYTES + 1, maxBytes: MAX_MIGRATION_FILE_BYTES }, { file, exitCode: 1 });
    // One byte less loads.
    await writeFile(file, body + ' '.repeat(MAX_MIGRATION_FILE_BYTES - body.length));
    await expect(loadMigrationFile(file)).resolves.toMatchObject({ migration: { name: '01_huge' } });
  });

  it(`refuses more than ${MAX_MIGRATION_OPERATIONS} operations, naming the file and the limit`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-load-'));
    const operations = (count: number) => Array.from({ length: count }, (_, i) => ({ create_index: { name: `items_${i}`, table: 'items', columns: [{ column: 'v' }] } }));
    const file = join(dir, '01_many.json');
    await writeFile(file, JSON.stringify({ operations: operations(MAX_MIGRATION_OPERATIONS + 1) }));
    await expectError(
      loadMigrationFile(file),
      { kind: 'migration_too_many_operations', count: MAX_MIGRATION_OPERATIONS + 1, max: MAX_MIGRATION_OPERATIONS },
      { file, field: 'operations', exitCode: 1 },
    );
    await writeFile(file, JSON.stringify({ operations: operations(MAX_MIGRATION_OPERATIONS) }));
    expect((await loadMigrationFile(file)).migration.operations).toHaveLength(MAX_MIGRATION_OPERATIONS);
  });

  it('names the file when YAML aliases expand past the limit (an alias bomb)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-load-'));
    const file = join(dir, '01_bomb.yaml');
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (const [previous, next] of [['a', 'b'], ['b', 'c'], ['c', 'd'], ['d', 'e'], ['e', 'f']]) levels.push(`${next}: &${next} [${Array(9).fill(`*${previous}`).join(',')}]`);
    await writeFile(file, `${levels.join('\n')}\noperations: [*f]\n`);
    await expectError(loadMigrationFile(file), { kind: 'migration_syntax', format: 'yaml', reason: expect.stringMatching(/^Excessive alias count/) }, { file });
  });

  it('names the file when YAML nests too deep for the parser', async () => {
    const deep = `operations: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`;
    await expectError(
      () => parseMigration(deep, { file: 'deep.yaml', format: 'yaml' }),
      { kind: 'migration_syntax', format: 'yaml', line: 1, column: expect.any(Number), reason: 'Maximum call stack size exceeded' },
      { file: 'deep.yaml' },
    );
  });
});
