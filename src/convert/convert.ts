/**
 * `tandem convert`: plain SQL DDL to migrations in pgroll's format. Every statement becomes the
 * tandem operation that does the same change without blocking the application, or a `sql`
 * operation with the reason when there is none. A `sql` operation that runs at start must be
 * alone in its migration (tandem cannot see what it changes), so a file that needs one is split
 * into consecutive migrations around it. The result is checked with the validator `tandem start`
 * uses before anyone sees it.
 */
import { parseSql } from '../sqlparse/parse.js';
import { parseMigration } from '../migration/load.js';
import { TandemError } from '../errors.js';
import type { ConvertedOperation } from './context.js';
import { convertStatement } from './statements.js';

export interface ConvertOptions {
  /** The migration's name (pgroll's `name` field); numbered `_1`, `_2`, ... when the file needs several. */
  name: string;
  /** The schema tandem migrates; tables qualified with it are written unqualified. */
  schema: string;
}

export interface ConvertedMigration {
  name: string;
  operations: ConvertedOperation[];
}

export interface Conversion {
  /** In the order they must run. */
  migrations: ConvertedMigration[];
  /** Statements that needed no operation, said once for the whole conversion. */
  skipped: string[];
}

export async function convertSql(text: string, file: string, options: ConvertOptions): Promise<Conversion> {
  const parsed = await parseSql(text, file);
  const operations: ConvertedOperation[] = [];
  const skipped = new Set<string>();
  for (const statement of parsed.statements) {
    const result = convertStatement({ parsed, statement, schema: options.schema }, operations);
    operations.push(...result.operations);
    if (result.skipped) skipped.add(result.skipped);
  }
  if (!operations.length) {
    throw new TandemError('convert_empty', 'the file has no statement to convert', { file, hint: 'a migration needs at least one operation' });
  }
  const groups = isolateRawSql(operations);
  const width = String(groups.length).length;
  const migrations = groups.map((group, index) => ({
    name: groups.length === 1 ? options.name : `${options.name}_${String(index + 1).padStart(width, '0')}`,
    operations: group,
  }));
  for (const migration of migrations) assertValid(migration, file);
  return { migrations, skipped: [...skipped] };
}

/** Consecutive groups of operations in which every start-time `sql` operation stands alone. */
function isolateRawSql(operations: ConvertedOperation[]): ConvertedOperation[][] {
  const groups: ConvertedOperation[][] = [];
  let current: ConvertedOperation[] = [];
  for (const converted of operations) {
    const isolated = converted.kind === 'sql' && !(converted.body as { onComplete?: boolean }).onComplete;
    if (isolated) {
      if (current.length) groups.push(current);
      groups.push([converted]);
      current = [];
    } else {
      current.push(converted);
    }
  }
  if (current.length) groups.push(current);
  return groups;
}

/** The migration document, as JSON and YAML both write it. */
export function migrationDocument(migration: ConvertedMigration): { name: string; operations: Record<string, unknown>[] } {
  return { name: migration.name, operations: migration.operations.map(({ kind, body }) => ({ [kind]: body })) };
}

/** A converted migration that tandem would refuse is a bug in convert: stop rather than write it. */
function assertValid(migration: ConvertedMigration, file: string): void {
  try {
    parseMigration(JSON.stringify(migrationDocument(migration)), { file, format: 'json' });
  } catch (error) {
    if (!(error instanceof TandemError)) throw error;
    throw new TandemError('convert_invalid', `the converted migration ${migration.name} does not validate: ${error.message}`, {
      file,
      operation: error.operation,
      kind: error.kind,
      field: error.field,
      hint: 'this is a bug in tandem convert; please report it with the SQL statement',
    });
  }
}
