import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { TandemError } from '../errors.js';
import { closest } from './suggest.js';
import { migrationEnvelope, OPERATION_KINDS, operationBodies, type Migration, type Operation, type OperationKind } from './format.js';

export const MIGRATION_EXTENSIONS = ['.json', '.yaml', '.yml'] as const;

/** A migration as read from a file: validated shape plus where it came from and its digest. */
export interface LoadedMigration {
  migration: Migration;
  /** The file it came from, as given. */
  file: string;
  /** sha256 of the migration's canonical JSON: formatting and JSON/YAML choice do not change it. */
  digest: string;
  /** The parsed document, stored in history exactly as the user wrote it. */
  raw: unknown;
}

export async function loadMigrationFile(file: string): Promise<LoadedMigration> {
  const extension = extname(file).toLowerCase();
  if (!(MIGRATION_EXTENSIONS as readonly string[]).includes(extension)) {
    throw new TandemError('migration_file_type', `unsupported file type "${extension || '(none)'}"`, {
      file,
      hint: 'migrations are .json, .yaml or .yml files',
    });
  }
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new TandemError('migration_file_unreadable', code === 'ENOENT' ? 'no such file' : `cannot read the file (${code})`, { file });
  }
  return parseMigration(text, { file, format: extension === '.json' ? 'json' : 'yaml' });
}

export interface ParseOptions {
  file: string;
  format: 'json' | 'yaml';
}

export function parseMigration(text: string, options: ParseOptions): LoadedMigration {
  const { file } = options;
  const raw = parseDocument(text, options);
  const envelope = migrationEnvelope.safeParse(raw, { reportInput: true });
  if (!envelope.success) throw issueToError(envelope.error.issues[0]!, { file });
  const name = envelope.data.name ?? basename(file, extname(file));
  const operations = envelope.data.operations.map((operation, index) => parseOperation(operation, index, file));
  if (operations.length === 0) {
    throw new TandemError('migration_empty', 'the migration has no operations', { file, field: 'operations' });
  }
  const migration: Migration = { name, operations };
  if (envelope.data.version_schema) migration.versionSchema = envelope.data.version_schema;
  return { migration, file, raw, digest: digestOf(raw) };
}

function parseDocument(text: string, { file, format }: ParseOptions): unknown {
  if (format === 'json') {
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new TandemError('migration_syntax', `not valid JSON: ${(error as Error).message}`, { file });
    }
  }
  const document = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const problem = document.errors[0];
  if (problem) {
    const line = problem.linePos?.[0];
    const where = line ? ` at line ${line.line}, column ${line.col}` : '';
    throw new TandemError('migration_syntax', `not valid YAML${where}: ${problem.message.split('\n')[0]}`, { file });
  }
  return document.toJS() as unknown;
}

function parseOperation(value: unknown, index: number, file: string): Operation {
  const at = { file, operation: index };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TandemError('operation_shape', 'an operation must be an object with exactly one key, its kind (e.g. add_column)', at);
  }
  const keys = Object.keys(value);
  if (keys.length !== 1) {
    throw new TandemError(
      'operation_shape',
      keys.length === 0
        ? 'empty operation: expected one key naming its kind (e.g. add_column)'
        : `an operation has exactly one key, its kind; found ${keys.map((k) => `"${k}"`).join(', ')}`,
      { ...at, hint: 'split them into separate items of "operations"' },
    );
  }
  const kind = keys[0]!;
  if (!(OPERATION_KINDS as string[]).includes(kind)) {
    const suggestion = closest(kind, OPERATION_KINDS);
    throw new TandemError('operation_unknown', `unknown operation "${kind}"`, {
      ...at,
      hint: suggestion ? `did you mean "${suggestion}"?` : `known operations: ${OPERATION_KINDS.join(', ')}`,
    });
  }
  const schema = operationBodies[kind as OperationKind] as z.ZodType;
  const result = schema.safeParse((value as Record<string, unknown>)[kind], { reportInput: true });
  if (!result.success) throw issueToError(result.error.issues[0]!, { ...at, kind });
  return { kind, body: result.data } as Operation;
}

/** Turns the first validation complaint into an error naming the exact field. */
function issueToError(issue: z.core.$ZodIssue, at: { file: string; operation?: number; kind?: string }): TandemError {
  const field = issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : String(part))).join('.').replace(/\.\[/g, '[');
  let message: string;
  let hint: string | undefined;
  switch (issue.code) {
    case 'invalid_type':
      message = issue.input === undefined ? `is required (${issue.expected})` : `must be ${article(issue.expected)}, got ${describe(issue.input)}`;
      break;
    case 'unrecognized_keys': {
      message = `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      break;
    }
    case 'invalid_value':
      message = `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(issue.input)}`;
      break;
    default:
      message = issue.message;
  }
  if (issue.code === 'unrecognized_keys') hint = 'check the spelling against pgroll\'s migration format';
  return new TandemError('migration_invalid', message, { ...at, field: field || undefined, hint });
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

/** Canonical JSON (object keys sorted) hashed with sha256. */
export function digestOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
