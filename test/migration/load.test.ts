import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatError, TandemError } from '../../src/errors/index.js';
import { loadMigrationFile, MAX_MIGRATION_FILE_BYTES, MAX_MIGRATION_OPERATIONS, parseMigration } from '../../src/migration/load.js';

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

  it('refuses control characters and "@" in the migration name and version_schema, naming file, field and character', async () => {
    const operations = [{ drop_table: { name: 't' } }];
    const inName = failure(() => parseJson({ name: '02_add\nemail', operations }));
    expect(inName).toMatchObject({ code: 'migration_name_invalid', file: '03_example.json', field: 'name', exitCode: 1 });
    expect(inName.message).toBe('"02_add\\nemail" contains U+000A (line feed) at character 7: control characters and line breaks are not allowed');
    expect(inName.hint).toMatch(/fix `name`/);

    const inVersionSchema = failure(() => parseJson({ version_schema: 'public_02@v2', operations }));
    expect(inVersionSchema).toMatchObject({ code: 'migration_name_invalid', field: 'version_schema' });
    expect(inVersionSchema.message).toMatch(/^"public_02@v2" contains "@" at character 10: /);

    for (const [name, character] of [['a\u0000b', 'U+0000 (NUL)'], ['a\tb', 'U+0009 (tab)'], ['a\u007fb', 'U+007F (delete)'], ['a\u2028b', 'U+2028 (line separator)'], ['a\u001bb', 'U+001B (escape)']]) {
      expect(failure(() => parseJson({ name, operations })).message).toContain(`contains ${character} at character 2`);
    }

    // From the file name (a real file): the error says so and suggests renaming it.
    const dir = await mkdtemp(join(tmpdir(), 'tandem-load-'));
    const file = join(dir, '02_add\remail.json');
    await writeFile(file, JSON.stringify({ operations }));
    const fromFile = await loadMigrationFile(file).then(() => undefined, (error: unknown) => error as TandemError);
    expect(fromFile).toMatchObject({ code: 'migration_name_invalid', file, field: undefined });
    expect(fromFile!.message).toBe('the migration name "02_add\\remail" (the file name, as the file sets no name) contains U+000D (carriage return) at character 7: control characters and line breaks are not allowed');
    expect(fromFile!.hint).toMatch(/^rename the file/);
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
    const error = await loadMigrationFile(file).then(() => undefined, (e: unknown) => e as TandemError);
    expect(error).toMatchObject({ code: 'migration_file_too_large', file, exitCode: 1 });
    expect(error!.message).toBe(`the file has ${MAX_MIGRATION_FILE_BYTES + 1} bytes; a migration file may have at most ${MAX_MIGRATION_FILE_BYTES} (10 MiB)`);
    expect(error!.hint).toMatch(/split it into several migrations/);
    // One byte less loads.
    await writeFile(file, body + ' '.repeat(MAX_MIGRATION_FILE_BYTES - body.length));
    await expect(loadMigrationFile(file)).resolves.toMatchObject({ migration: { name: '01_huge' } });
  });

  it(`refuses more than ${MAX_MIGRATION_OPERATIONS} operations, naming the file and the limit`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-load-'));
    const operations = (count: number) => Array.from({ length: count }, (_, i) => ({ create_index: { name: `items_${i}`, table: 'items', columns: [{ column: 'v' }] } }));
    const file = join(dir, '01_many.json');
    await writeFile(file, JSON.stringify({ operations: operations(MAX_MIGRATION_OPERATIONS + 1) }));
    const error = await loadMigrationFile(file).then(() => undefined, (e: unknown) => e as TandemError);
    expect(error).toMatchObject({ code: 'migration_too_many_operations', file, field: 'operations', exitCode: 1 });
    expect(error!.message).toBe(`the migration has ${MAX_MIGRATION_OPERATIONS + 1} operations; a migration may have at most ${MAX_MIGRATION_OPERATIONS}`);
    await writeFile(file, JSON.stringify({ operations: operations(MAX_MIGRATION_OPERATIONS) }));
    expect((await loadMigrationFile(file)).migration.operations).toHaveLength(MAX_MIGRATION_OPERATIONS);
  });

  it('names the file when YAML aliases expand past the limit (an alias bomb)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-load-'));
    const file = join(dir, '01_bomb.yaml');
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (const [previous, next] of [['a', 'b'], ['b', 'c'], ['c', 'd'], ['d', 'e'], ['e', 'f']]) levels.push(`${next}: &${next} [${Array(9).fill(`*${previous}`).join(',')}]`);
    await writeFile(file, `${levels.join('\n')}\noperations: [*f]\n`);
    const error = await loadMigrationFile(file).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(TandemError);
    expect(error).toMatchObject({ code: 'migration_syntax', file });
    expect(formatError(error)).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid YAML: Excessive alias count`));
  });

  it('names the file when YAML nests too deep for the parser', () => {
    const deep = `operations: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`;
    const error = failure(() => parseMigration(deep, { file: 'deep.yaml', format: 'yaml' }));
    expect(error).toMatchObject({ code: 'migration_syntax', file: 'deep.yaml' });
    expect(error.message).toMatch(/^not valid YAML at line 1, column \d+: Maximum call stack size exceeded$/);
  });
});
