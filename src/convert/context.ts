/** What every converter gets and gives: the statement, the target schema, and notes for the reader. */
import type { RangeVar } from 'libpg-query';
import type { OperationBody, OperationKind } from '../migration/format.js';
import type { ParsedSql, Statement } from '../sqlparse/parse.js';
import { textOf } from '../sqlparse/slice.js';

/**
 * A remark attached to an operation. `review` marks something the user must check or fill in
 * before running the migration (a placeholder expression, say); `info` explains a choice.
 */
export interface Note {
  level: 'review' | 'info';
  text: string;
}

export interface ConvertedOperation<K extends OperationKind = OperationKind> {
  kind: K;
  body: OperationBody<K>;
  notes: Note[];
}

export function operation<K extends OperationKind>(kind: K, body: OperationBody<K>, notes: Note[] = []): ConvertedOperation {
  return { kind, body, notes } as unknown as ConvertedOperation;
}

export interface ConvertContext {
  parsed: ParsedSql;
  statement: Statement;
  /** The schema tandem migrates (--schema): tables in it are written without a qualifier. */
  schema: string;
}

/** The statement's own text, for `sql` operations. */
export function statementText(context: ConvertContext): string {
  return textOf(context.parsed, context.statement.firstToken, context.statement.endToken);
}

/** A `sql` operation running the statement as written, with the reason it has no safer form. */
export function rawSql(context: ConvertContext, why: string, text = statementText(context)): ConvertedOperation {
  return operation('sql', { up: text }, [{ level: 'info', text: `raw SQL: ${why}` }]);
}

/**
 * The table name as the migration format wants it (unqualified, inside --schema), or a reason
 * why the table is out of reach.
 */
export function tableName(context: ConvertContext, relation: RangeVar | undefined): { name: string } | { problem: string } {
  if (!relation?.relname) return { problem: 'the statement names no table' };
  if (relation.schemaname && relation.schemaname !== context.schema) {
    return { problem: `table ${relation.schemaname}.${relation.relname} is outside the migrated schema "${context.schema}" (--schema)` };
  }
  if (relation.relpersistence === 't') return { problem: 'temporary tables are not part of a migrated schema' };
  return { name: relation.relname };
}

/** Foreign key action codes in the parse tree, as the migration format spells them. */
export const FOREIGN_KEY_ACTIONS = { a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE', n: 'SET NULL', d: 'SET DEFAULT' } as const;
export const MATCH_TYPES = { s: 'SIMPLE', f: 'FULL', p: 'PARTIAL' } as const;

/** Thrown by converters for a part they cannot express; the statement then becomes a `sql` operation. */
export class Unconvertible extends Error {}
