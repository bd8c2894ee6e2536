/**
 * `tandem convert`: plain SQL DDL to a migration in pgroll's format. Every statement becomes the
 * tandem operation that does the same change without blocking the application, or a `sql`
 * operation with the reason when there is none. The result is checked with the same validator
 * `tandem start` uses before anyone sees it.
 */
import { parseSql } from '../lint/parse.js';
import { parseMigration } from '../migration/load.js';
import { TandemError } from '../errors.js';
import type { ConvertedOperation } from './context.js';
import { convertStatement } from './statements.js';

export interface ConvertOptions {
  /** The migration's name (pgroll's `name` field). */
  name: string;
  /** The schema tandem migrates; tables qualified with it are written unqualified. */
  schema: string;
}

export interface Conversion {
  name: string;
  operations: ConvertedOperation[];
  /** Statements that needed no operation, said once for the whole migration. */
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
  const conversion = { name: options.name, operations, skipped: [...skipped] };
  assertValid(conversion, file);
  return conversion;
}

/** The migration document, as JSON and YAML both write it. */
export function migrationDocument(conversion: Conversion): { name: string; operations: Record<string, unknown>[] } {
  return { name: conversion.name, operations: conversion.operations.map(({ kind, body }) => ({ [kind]: body })) };
}

/** A converted migration that tandem would refuse is a bug in convert: stop rather than write it. */
function assertValid(conversion: Conversion, file: string): void {
  try {
    parseMigration(JSON.stringify(migrationDocument(conversion)), { file, format: 'json' });
  } catch (error) {
    if (!(error instanceof TandemError)) throw error;
    throw new TandemError('convert_invalid', `the converted migration does not validate: ${error.message}`, {
      file,
      operation: error.operation,
      kind: error.kind,
      field: error.field,
      hint: 'this is a bug in tandem convert; please report it with the SQL statement',
    });
  }
}
