/** One SQL statement to the operations that do the same thing safely, or to `sql` with the reason. */
import type { CommentStmt, DropStmt, RenameStmt } from 'libpg-query';
import { asNode, kindOf, relationFromNames, stringList } from '../sqlparse/ast.js';
import { convertAlterTable } from './alter.js';
import { operation, rawSql, tableName, Unconvertible, type ConvertContext, type ConvertedOperation, type Note } from './context.js';
import { convertCreateIndex } from './indexes.js';
import { convertCreateTable } from './table.js';

export interface StatementResult {
  operations: ConvertedOperation[];
  /** Said about the whole migration when the statement has no operation at all (BEGIN, SET lock_timeout). */
  skipped?: string;
}

/**
 * `earlier` are the operations converted so far: a COMMENT on a table created in this migration
 * goes into its create_table rather than an operation of its own.
 */
export function convertStatement(context: ConvertContext, earlier: readonly ConvertedOperation[]): StatementResult {
  const { node } = context.statement;
  try {
    const create = asNode(node, 'CreateStmt');
    if (create) return { operations: [convertCreateTable(context, create)] };
    const alter = asNode(node, 'AlterTableStmt');
    if (alter) return { operations: convertAlterTable(context, alter) };
    const index = asNode(node, 'IndexStmt');
    if (index) return { operations: [convertCreateIndex(context, index)] };
    const rename = asNode(node, 'RenameStmt');
    if (rename) return { operations: [convertRename(context, rename)] };
    const drop = asNode(node, 'DropStmt');
    if (drop) return { operations: convertDrop(context, drop) };
    const comment = asNode(node, 'CommentStmt');
    if (comment) return convertComment(context, comment, earlier);
  } catch (error) {
    if (error instanceof Unconvertible) return { operations: [rawSql(context, error.message)] };
    throw error;
  }
  const transaction = asNode(node, 'TransactionStmt');
  if (transaction) return { operations: [], skipped: 'transaction control (BEGIN, COMMIT, ...): tandem runs each step in transactions of its own' };
  const set = asNode(node, 'VariableSetStmt');
  if (set && (set.name === 'lock_timeout' || set.name === 'statement_timeout')) {
    return { operations: [], skipped: `SET ${set.name}: tandem sets lock_timeout for every statement itself (--lock-timeout)` };
  }
  return { operations: [rawSql(context, reasonFor(context, kindOf(node)))] };
}

function reasonFor(context: ConvertContext, kind: string): string {
  if (kind === 'UpdateStmt' || kind === 'InsertStmt' || kind === 'DeleteStmt') {
    return 'data changes run once at start, in one statement; for backfills prefer the `up` of add_column or alter_column, which runs in batches and keeps running for rows old versions write';
  }
  return `tandem has no operation for ${leadingKeywords(context)}; it runs as written at start, and every running version sees its effect at once`;
}

/** Keywords that end a statement's name: `CREATE SCHEMA IF NOT EXISTS`, `GRANT SELECT ON`. */
const NOT_PART_OF_NAME = new Set(['IF', 'ON', 'CONCURRENTLY', 'ONLY', 'TO', 'FROM', 'IN', 'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'ALL', 'USAGE']);

/** How the statement starts (`CREATE TRIGGER`, `GRANT`, `ALTER TYPE`): the words a reader knows it by. */
function leadingKeywords(context: ConvertContext): string {
  const { node } = context.statement;
  if (asNode(node, 'AlterObjectSchemaStmt')) return 'ALTER ... SET SCHEMA';
  if (asNode(node, 'CreateTableAsStmt')?.objtype === 'OBJECT_TABLE') return 'CREATE TABLE ... AS';
  const words: string[] = [];
  for (let i = context.statement.firstToken; i < context.statement.endToken && words.length < 3; i++) {
    const token = context.parsed.tokens[i]!;
    const word = token.text.toUpperCase();
    if (!token.keyword || token.text.startsWith('"') || (words.length > 0 && NOT_PART_OF_NAME.has(word))) break;
    words.push(word);
  }
  return words.join(' ') || 'this statement';
}

function convertRename(context: ConvertContext, rename: RenameStmt): ConvertedOperation {
  const target = tableName(context, rename.relation);
  if ('problem' in target) throw new Unconvertible(target.problem);
  const to = rename.newname ?? '';
  if (rename.renameType === 'OBJECT_COLUMN' && rename.relationType === 'OBJECT_TABLE') {
    return operation('rename_column', { table: target.name, from: rename.subname ?? '', to });
  }
  if (rename.renameType === 'OBJECT_TABLE') return operation('rename_table', { from: target.name, to });
  if (rename.renameType === 'OBJECT_TABCONSTRAINT') return operation('rename_constraint', { table: target.name, from: rename.subname ?? '', to });
  throw new Unconvertible(`RENAME of ${rename.renameType?.replace('OBJECT_', '').toLowerCase()} objects has no tandem operation`);
}

function convertDrop(context: ConvertContext, drop: DropStmt): ConvertedOperation[] {
  const kind = drop.removeType === 'OBJECT_TABLE' ? 'drop_table' : drop.removeType === 'OBJECT_INDEX' ? 'drop_index' : undefined;
  if (!kind) throw new Unconvertible(`DROP ${drop.removeType?.replace('OBJECT_', '')} has no tandem operation`);
  const names = (drop.objects ?? []).map((object) => {
    const relation = relationFromNames(stringList(asNode(object, 'List')?.items));
    if (!relation) throw new Unconvertible('DROP without a name');
    if (relation.schema && relation.schema !== context.schema) throw new Unconvertible(`${relation.schema}.${relation.name} is outside the migrated schema "${context.schema}"`);
    return relation.name;
  });
  const notes: Note[] = [];
  if (drop.missing_ok) notes.push({ level: 'info', text: 'IF EXISTS dropped: tandem checks that it exists' });
  if (drop.behavior === 'DROP_CASCADE') notes.push({ level: 'review', text: 'CASCADE dropped: dependent objects make the drop fail' });
  return names.map((name, index) => operation(kind, { name }, index === 0 ? notes : []));
}

function convertComment(context: ConvertContext, comment: CommentStmt, earlier: readonly ConvertedOperation[]): StatementResult {
  const names = stringList(asNode(comment.object, 'List')?.items);
  const text = comment.comment ?? null;
  if (comment.objtype === 'OBJECT_COLUMN' && names.length >= 2) {
    const column = names.at(-1)!;
    const table = relationFromNames(names.slice(0, -1))!;
    if (table.schema && table.schema !== context.schema) throw new Unconvertible(`${table.schema}.${table.name} is outside the migrated schema "${context.schema}"`);
    const created = createdTable(earlier, table.name);
    const definition = created?.columns.find((c) => c.name === column);
    if (definition) {
      if (text === null) delete definition.comment;
      else definition.comment = text;
      return { operations: [] };
    }
    return { operations: [operation('alter_column', { table: table.name, column, comment: text })] };
  }
  if (comment.objtype === 'OBJECT_TABLE') {
    const table = relationFromNames(names);
    const created = table && (!table.schema || table.schema === context.schema) ? createdTable(earlier, table.name) : undefined;
    if (created) {
      if (text === null) delete created.comment;
      else created.comment = text;
      return { operations: [] };
    }
    throw new Unconvertible('tandem sets table comments only on tables it creates (create_table comment)');
  }
  throw new Unconvertible(`COMMENT ON ${comment.objtype?.replace('OBJECT_', '')} has no tandem operation`);
}

function createdTable(earlier: readonly ConvertedOperation[], name: string) {
  for (const converted of earlier) {
    if (converted.kind === 'create_table') {
      const body = converted.body as { name: string; comment?: string; columns: { name: string; comment?: string }[] };
      if (body.name === name) return body;
    }
  }
  return undefined;
}
