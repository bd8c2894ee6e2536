/**
 * `tandem convert`: plain SQL DDL to migrations in pgroll's format. Every statement becomes the
 * tandem operation that does the same change without blocking the application, or a `sql`
 * operation with the reason when there is none. A `sql` operation that runs at start must be
 * alone in its migration (tandem cannot see what it changes), so consecutive raw statements share
 * one `sql` operation and a file that needs one is split into consecutive migrations around it.
 * The result is checked with the validator `tandem start` uses before anyone sees it.
 */
import { createHash } from 'node:crypto';
import { parseSql, type ParsedSql, type Statement } from '../sqlparse/parse.js';
import { asNode } from '../sqlparse/ast.js';
import { parseMigration } from '../migration/load.js';
import { TandemError } from '../errors/index.js';
import type { ConvertedOperation, Note } from './context.js';
import { MAX_NAME } from './names.js';
import { versionSchemaName } from '../migration/names.js';
import { convertStatement } from './statements.js';

export interface ConvertOptions {
  /** The migration's name (pgroll's `name` field); numbered `_1`, `_2`, ... when the file needs several. */
  name: string;
  /** The schema tandem migrates; tables qualified with it are written unqualified. */
  schema: string;
}

export interface ConvertedMigration {
  name: string;
  /** Set when `<schema>_<name>` would pass PostgreSQL's 63-byte limit for names. */
  versionSchema?: string;
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
  const convert = (source: ParsedSql, statement: Statement, notes: Note[] = []) => {
    const result = convertStatement({ parsed: source, statement, schema: options.schema }, operations);
    for (const converted of result.operations) converted.notes.push(...notes);
    operations.push(...result.operations);
    if (result.skipped) skipped.add(result.skipped);
  };
  for (const statement of parsed.statements) {
    const guarded = guardedStatement(statement);
    if (guarded === undefined) {
      convert(parsed, statement);
      continue;
    }
    // Drizzle wraps ADD CONSTRAINT in a DO block that swallows duplicate_object: convert the
    // statement inside, which tandem refuses cleanly if the constraint is already there.
    const inner = await parseSql(guarded, file);
    for (const innerStatement of inner.statements) convert(inner, innerStatement, [GUARD_NOTE]);
  }
  if (!operations.length) {
    throw new TandemError({ kind: 'convert_empty', source: 'file' }, { file });
  }
  const groups = isolateRawSql(joinRawSql(withoutDropsOfDroppedTables(markReplacements(operations))));
  // Padded, so that `_02` sorts before `_10` the way `migrate` orders files: by name.
  const width = String(groups.length).length;
  const migrations = groups.map((group, index) =>
    withVersionSchema(
      { name: groups.length === 1 ? options.name : `${options.name}_${String(index + 1).padStart(width, '0')}`, operations: group },
      options.schema,
    ),
  );
  for (const migration of migrations) assertValid(migration, file);
  return { migrations, skipped: [...skipped] };
}

/** `DO $$ BEGIN <statement>; EXCEPTION WHEN duplicate_object THEN null; END $$`, as Drizzle writes it. */
const DUPLICATE_GUARD = /^\s*BEGIN\s+([\s\S]+?);?\s*EXCEPTION\s+WHEN\s+duplicate_object\s+THEN\s+null\s*;\s*END\s*;?\s*$/i;
const GUARD_NOTE: Note = { level: 'info', text: 'the DO block that ignored duplicate_object is dropped: tandem refuses to create what already exists' };

/** The statement inside a duplicate_object guard, when `statement` is one. */
function guardedStatement(statement: Statement): string | undefined {
  const block = asNode(statement.node, 'DoStmt');
  if (!block) return undefined;
  const language = block.args?.map((arg) => asNode(arg, 'DefElem')).find((d) => d?.defname === 'language');
  if (language && asNode(language.arg, 'String')?.sval?.toLowerCase() !== 'plpgsql') return undefined;
  const body = block.args?.map((arg) => asNode(arg, 'DefElem')).find((d) => d?.defname === 'as');
  const text = asNode(body?.arg, 'String')?.sval;
  const inner = text === undefined ? undefined : DUPLICATE_GUARD.exec(text)?.[1];
  // One plain statement only: a body with more in it is a program, and stays raw SQL.
  return inner !== undefined && !inner.includes(';') ? inner : undefined;
}

const isStartSql = (converted: ConvertedOperation) => converted.kind === 'sql' && !(converted.body as { onComplete?: boolean }).onComplete;
/** CREATE INDEX CONCURRENTLY and the like cannot share a transaction, so they cannot share a `sql` operation either. */
const mustRunAlone = (converted: ConvertedOperation) => /\bconcurrently\b/i.test((converted.body as { up: string }).up);

/**
 * Consecutive raw statements as one `sql` operation: each would otherwise need a migration of its
 * own, and a history of files would become several times as many migrations.
 */
function joinRawSql(operations: ConvertedOperation[]): ConvertedOperation[] {
  const joined: ConvertedOperation[] = [];
  for (const converted of operations) {
    const previous = joined.at(-1);
    if (previous && isStartSql(previous) && isStartSql(converted) && !mustRunAlone(previous) && !mustRunAlone(converted)) {
      const up = `${(previous.body as { up: string }).up};\n${(converted.body as { up: string }).up}`;
      const notes = [...previous.notes, ...converted.notes.filter((note) => !previous.notes.some((n) => n.text === note.text))];
      joined[joined.length - 1] = { kind: 'sql', body: { up } as ConvertedOperation['body'], notes };
    } else {
      joined.push(converted);
    }
  }
  return joined;
}

/** A constraint dropped on a table that the same file then drops goes with its table. */
function withoutDropsOfDroppedTables(operations: ConvertedOperation[]): ConvertedOperation[] {
  return operations.filter((converted, index) => {
    if (converted.kind !== 'drop_constraint') return true;
    const table = (converted.body as { table: string }).table;
    return !operations.slice(index + 1).some((later) => later.kind === 'drop_table' && (later.body as { name: string }).name === table);
  });
}

/**
 * DROP CONSTRAINT c then ADD CONSTRAINT c (how Prisma changes ON DELETE) is one change. When the new
 * constraint is a foreign key on the same columns as before, rows that met the old one meet the new
 * one too, so there is nothing to review.
 */
function markReplacements(operations: ConvertedOperation[]): ConvertedOperation[] {
  return operations.map((converted, index) => {
    if (converted.kind !== 'create_constraint') return converted;
    const body = converted.body as { table: string; name: string; type: string };
    const dropped = operations.slice(0, index).some((earlier) => {
      const drop = earlier.body as { table?: string; name?: string };
      return earlier.kind === 'drop_constraint' && drop.table === body.table && drop.name === body.name;
    });
    if (!dropped) return converted;
    const notes = converted.notes.filter((note) => !(body.type === 'foreign_key' && note.level === 'review' && note.text.startsWith('up/down copy')));
    notes.push({ level: 'info', text: `replaces the constraint ${body.name} dropped above, in the same migration` });
    return { ...converted, notes };
  });
}

/**
 * `<schema>_<name>` is the version schema; when that passes 63 bytes the migration sets a shorter
 * `version_schema` (the name's start and a digest of the whole name, so it stays unique; the schema
 * prefix is added to it as to a name) and keeps its full name, which the proxy also accepts
 * (`app@<name>`).
 */
function withVersionSchema(migration: ConvertedMigration, schema: string): ConvertedMigration {
  // A cut name could make two versions share one schema.
  if (Buffer.byteLength(versionSchemaName(migration, schema)) <= MAX_NAME) return migration;
  const digest = createHash('sha256').update(migration.name).digest('hex').slice(0, 8);
  let start = migration.name;
  while (start && Buffer.byteLength(versionSchemaName({ name: migration.name, versionSchema: `${start}_${digest}` }, schema)) > MAX_NAME) {
    start = [...start].slice(0, -1).join('');
  }
  return { ...migration, versionSchema: `${start}_${digest}` };
}

/** Consecutive groups of operations in which every start-time `sql` operation stands alone. */
function isolateRawSql(operations: ConvertedOperation[]): ConvertedOperation[][] {
  const groups: ConvertedOperation[][] = [];
  let current: ConvertedOperation[] = [];
  for (const converted of operations) {
    if (isStartSql(converted)) {
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
export function migrationDocument(migration: ConvertedMigration): { name: string; version_schema?: string; operations: Record<string, unknown>[] } {
  return {
    name: migration.name,
    ...(migration.versionSchema ? { version_schema: migration.versionSchema } : {}),
    operations: migration.operations.map(({ kind, body }) => ({ [kind]: body })),
  };
}

/** A converted migration that tandem would refuse is a bug in convert: stop rather than write it. */
function assertValid(migration: ConvertedMigration, file: string): void {
  try {
    parseMigration(JSON.stringify(migrationDocument(migration)), { file, format: 'json', allowPlaceholders: true });
  } catch (error) {
    if (!(error instanceof TandemError)) throw error;
    throw new TandemError({ kind: 'convert_invalid', name: migration.name, reason: error.message }, { file, operation: error.operation, kind: error.kind, field: error.field });
  }
}
