/** CREATE TABLE as a create_table operation: columns and table constraints. */
import type { Constraint, CreateStmt } from 'libpg-query';
import { asNode, stringList, walk } from '../sqlparse/ast.js';
import { findToken, insideParentheses } from '../sqlparse/slice.js';
import type { ColumnDefinition, TableConstraintDefinition } from '../migration/format.js';
import { convertColumn, foreignKeyOptions, keywordAfter, parenthesesAfter, checkText } from './column.js';
import { operation, tableName, Unconvertible, type ConvertContext, type ConvertedOperation, type Note } from './context.js';
import { defaultName } from './names.js';

export function convertCreateTable(context: ConvertContext, create: CreateStmt): ConvertedOperation {
  const target = tableName(context, create.relation);
  if ('problem' in target) throw new Unconvertible(target.problem);
  if (create.relation?.relpersistence === 'u') throw new Unconvertible('UNLOGGED tables have no create_table form');
  if (create.inhRelations?.length || create.partspec || create.partbound || create.ofTypename) {
    throw new Unconvertible('inheritance, partitioning and typed tables have no create_table form');
  }
  if (create.options?.length || create.tablespacename || create.accessMethod || (create.oncommit && create.oncommit !== 'ONCOMMIT_NOOP')) {
    throw new Unconvertible('table storage options (WITH, TABLESPACE, USING) have no create_table form');
  }
  const table = target.name;
  const columns: ColumnDefinition[] = [];
  const constraints: TableConstraintDefinition[] = [];
  const notes: Note[] = [];
  for (const element of create.tableElts ?? []) {
    const column = asNode(element, 'ColumnDef');
    const constraint = asNode(element, 'Constraint');
    if (column) {
      const converted = convertColumn(context, table, column);
      columns.push(converted.column);
      constraints.push(...converted.constraints);
      notes.push(...converted.notes);
    } else if (constraint) {
      const pkColumns = unnamedPrimaryKey(constraint);
      if (pkColumns) markPrimaryKey(columns, pkColumns);
      else constraints.push(tableConstraint(context, table, constraint));
    } else {
      throw new Unconvertible('LIKE clauses have no create_table form');
    }
  }
  if (!columns.length) throw new Unconvertible('a table without columns has no create_table form');
  if (create.if_not_exists) notes.push({ level: 'info', text: 'IF NOT EXISTS dropped: tandem refuses to create a table that already exists' });
  const body = constraints.length ? { name: table, columns, constraints } : { name: table, columns };
  return operation('create_table', body, notes);
}

/** The columns of a plain `PRIMARY KEY (a, b)`: written as `pk: true` on the columns themselves. */
function unnamedPrimaryKey(constraint: Constraint): string[] | undefined {
  if (constraint.contype !== 'CONSTR_PRIMARY' || constraint.conname || constraint.options?.length || constraint.including?.length) return undefined;
  if (constraint.indexspace || constraint.deferrable) return undefined;
  return stringList(constraint.keys);
}

function markPrimaryKey(columns: ColumnDefinition[], names: string[]): void {
  for (const name of names) {
    const column = columns.find((c) => c.name === name);
    // A key column declared after the constraint keeps the table-constraint form.
    if (!column) throw new Unconvertible(`PRIMARY KEY names "${name}" before its column is declared`);
    column.pk = true;
    column.nullable = false;
  }
}

/** A table-level constraint (`CONSTRAINT x CHECK ...`, `UNIQUE (a, b)`, `FOREIGN KEY ...`, `EXCLUDE ...`). */
export function tableConstraint(context: ConvertContext, table: string, constraint: Constraint): TableConstraintDefinition {
  const keys = stringList(constraint.keys);
  const result: TableConstraintDefinition = { name: '', type: 'check' };
  switch (constraint.contype) {
    case 'CONSTR_CHECK': {
      if (constraint.is_enforced === false) throw new Unconvertible('a NOT ENFORCED check has no create_table form');
      const columns = columnsReferenced(constraint.raw_expr);
      Object.assign(result, { name: constraint.conname ?? defaultName(table, columns.slice(0, 1), 'check'), type: 'check', check: checkText(context, constraint) });
      if (constraint.is_no_inherit) result.no_inherit = true;
      return result;
    }
    case 'CONSTR_PRIMARY':
    case 'CONSTR_UNIQUE': {
      const primary = constraint.contype === 'CONSTR_PRIMARY';
      Object.assign(result, { name: constraint.conname ?? defaultName(table, primary ? [] : keys, primary ? 'pkey' : 'key'), type: primary ? 'primary_key' : 'unique', columns: keys });
      if (constraint.nulls_not_distinct) result.nulls_not_distinct = true;
      addIndexParameters(context, constraint, result);
      addDeferral(constraint, result);
      return result;
    }
    case 'CONSTR_FOREIGN': {
      const columns = stringList(constraint.fk_attrs);
      const target = tableName(context, constraint.pktable);
      if ('problem' in target) throw new Unconvertible(`a foreign key: ${target.problem}`);
      const referenced = stringList(constraint.pk_attrs);
      if (!referenced.length) throw new Unconvertible(`the foreign key does not name the referenced columns (tandem cannot look up ${target.name}'s primary key)`);
      const references: NonNullable<TableConstraintDefinition['references']> = { table: target.name, columns: referenced, ...foreignKeyOptions(constraint) };
      const setColumns = stringList(constraint.fk_del_set_cols);
      if (setColumns.length) references.on_delete_set_columns = setColumns;
      Object.assign(result, { name: constraint.conname ?? defaultName(table, columns, 'fkey'), type: 'foreign_key', columns, references });
      addDeferral(constraint, result);
      return result;
    }
    case 'CONSTR_EXCLUSION': {
      const keyword = keywordAfter(context, constraint, 'exclude');
      const open = findToken(context.parsed, context.statement, keyword, '(');
      const elements = open === undefined ? undefined : insideParentheses(context.parsed, context.statement, open);
      if (!elements) throw new Unconvertible('could not read the EXCLUDE elements');
      const exclude: NonNullable<TableConstraintDefinition['exclude']> = { index_method: constraint.access_method ?? 'btree', elements: elements.text };
      if (constraint.where_clause) {
        const where = findToken(context.parsed, context.statement, elements.close + 1, 'where');
        if (where !== undefined) exclude.predicate = insideParentheses(context.parsed, context.statement, where + 1)?.text;
      }
      Object.assign(result, { name: constraint.conname ?? defaultName(table, columnsReferenced(constraint.exclusions), 'excl'), type: 'exclude', exclude });
      addIndexParameters(context, constraint, result);
      addDeferral(constraint, result);
      return result;
    }
    default:
      throw new Unconvertible(`a ${constraint.contype} table constraint has no create_table form`);
  }
}

/** INCLUDE, WITH (...) and USING INDEX TABLESPACE of a unique, primary key or exclusion constraint. */
function addIndexParameters(context: ConvertContext, constraint: Constraint, result: TableConstraintDefinition): void {
  const parameters: NonNullable<TableConstraintDefinition['index_parameters']> = {};
  const include = stringList(constraint.including);
  if (include.length) parameters.include_columns = include;
  if (constraint.indexspace) parameters.tablespace = constraint.indexspace;
  if (constraint.options?.length) parameters.storage_parameters = parenthesesAfter(context, constraint, 'with');
  if (Object.keys(parameters).length) result.index_parameters = parameters;
}

function addDeferral(constraint: Constraint, result: TableConstraintDefinition): void {
  if (constraint.deferrable) result.deferrable = true;
  if (constraint.initdeferred) result.initially_deferred = true;
}

/** Column names an expression refers to, in order of first use. */
export function columnsReferenced(expression: unknown): string[] {
  const found: string[] = [];
  walk(expression, (kind, body) => {
    let name: string | undefined;
    if (kind === 'ColumnRef') name = stringList(body.fields as never).at(-1);
    else if (kind === 'IndexElem') name = body.name as string | undefined;
    if (name && !found.includes(name)) found.push(name);
  });
  return found;
}

