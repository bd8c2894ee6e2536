/** Rules about column types that are hard to change once a table is big. */
import type { ColumnDef, TypeName } from 'libpg-query';
import { asNode, builtinType, stringList, typeSql, typmodValues } from '../../sqlparse/ast.js';
import type { Problem, Rule, RuleContext } from '../types.js';
import { alterTable, constraintOf, constraintsOf } from './support.js';

interface TypedColumn {
  name: string;
  type: TypeName;
  at: number | undefined;
  primaryKey: boolean;
}

/** Column types a statement introduces: CREATE TABLE columns, ADD COLUMN, ALTER COLUMN ... TYPE. */
function typedColumns(context: RuleContext): TypedColumn[] {
  const create = asNode(context.statement.node, 'CreateStmt');
  if (create) {
    const tableKeys = (create.tableElts ?? []).flatMap((element) => {
      const constraint = constraintOf(element);
      return constraint?.contype === 'CONSTR_PRIMARY' ? stringList(constraint.keys) : [];
    });
    return (create.tableElts ?? []).flatMap((element) => {
      const column = asNode(element, 'ColumnDef');
      return column ? fromColumn(column, tableKeys.includes(column.colname ?? '')) : [];
    });
  }
  const alter = alterTable(context);
  if (!alter) return [];
  return alter.commands.flatMap(({ cmd, at }) => {
    const column = asNode(cmd.def, 'ColumnDef');
    if (cmd.subtype === 'AT_AddColumn' && column) return fromColumn(column, false);
    if (cmd.subtype === 'AT_AlterColumnType' && column?.typeName) {
      return [{ name: cmd.name ?? '', type: column.typeName, at, primaryKey: false }];
    }
    return [];
  });
}

function fromColumn(column: ColumnDef, inTableKey: boolean): TypedColumn[] {
  if (!column.typeName) return [];
  const primaryKey = inTableKey || constraintsOf(column).some((c) => c.contype === 'CONSTR_PRIMARY');
  return [{ name: column.colname ?? '', type: column.typeName, at: column.location, primaryKey }];
}

const SMALL_INTEGERS = new Set(['int2', 'int4', 'serial', 'serial4', 'smallserial', 'serial2']);

export const preferBigintPrimaryKey: Rule = {
  name: 'prefer-bigint-primary-key',
  severity: 'warning',
  summary: 'integer or smallint primary key',
  why:
    'A 32-bit key runs out at about 2.1 billion values (smallint at 32767), and changing the type of a primary key ' +
    'later rewrites the table and every table whose foreign keys point at it.',
  fix: 'Use bigint (bigint GENERATED ALWAYS AS IDENTITY, or bigserial) for primary keys from the start.',
  example: {
    bad: 'CREATE TABLE invoices (id serial PRIMARY KEY, total numeric);',
    good: 'CREATE TABLE invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, total numeric);',
  },
  check(context) {
    return typedColumns(context).flatMap(({ name, type, at, primaryKey }): Problem[] => {
      const builtin = builtinType(type);
      if (!primaryKey || !builtin || !SMALL_INTEGERS.has(builtin) || type.arrayBounds?.length) return [];
      return [{ at: type.location ?? at, message: `primary key column "${name}" is ${typeSql(type)}` }];
    });
  },
};

export const preferText: Rule = {
  name: 'prefer-text',
  severity: 'warning',
  summary: 'varchar(n) or char(n) column',
  why:
    'The length limit is a constraint hidden in the type: raising it later is an ALTER COLUMN TYPE (a table rewrite ' +
    'when the new type is not binary-compatible, and a breaking change for running versions), and char(n) pads ' +
    'values with spaces. varchar(n) stores nothing more efficiently than text.',
  fix: 'Use text, with CHECK (char_length(column) <= n) if the limit matters: a check can be replaced NOT VALID, without a rewrite.',
  example: {
    bad: 'CREATE TABLE products (sku varchar(32) PRIMARY KEY);',
    good: 'CREATE TABLE products (sku text PRIMARY KEY CHECK (char_length(sku) <= 32));',
  },
  check(context) {
    return typedColumns(context).flatMap(({ name, type, at }): Problem[] => {
      const builtin = builtinType(type);
      const limited = (builtin === 'varchar' && typmodValues(type).length > 0) || builtin === 'bpchar';
      return limited ? [{ at: type.location ?? at, message: `column "${name}" is ${typeSql(type)}` }] : [];
    });
  },
};

export const preferTimestamptz: Rule = {
  name: 'prefer-timestamptz',
  severity: 'warning',
  summary: 'timestamp without time zone',
  why:
    'timestamp without time zone stores wall-clock readings with no zone: the same instant written from servers or ' +
    'sessions in different time zones gets different values, and comparisons across DST changes go wrong.',
  fix: 'Use timestamptz (timestamp with time zone): it stores an absolute instant and converts on input and output.',
  example: {
    bad: 'ALTER TABLE orders ADD COLUMN shipped_at timestamp;',
    good: 'ALTER TABLE orders ADD COLUMN shipped_at timestamptz;',
  },
  check(context) {
    return typedColumns(context).flatMap(({ name, type, at }): Problem[] =>
      builtinType(type) === 'timestamp' ? [{ at: type.location ?? at, message: `column "${name}" is ${typeSql(type)}` }] : [],
    );
  },
};

export const TYPE_RULES: Rule[] = [preferBigintPrimaryKey, preferText, preferTimestamptz];

