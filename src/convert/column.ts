/** A column definition in SQL (CREATE TABLE or ADD COLUMN) as a migration-format column. */
import type { ColumnDef, Constraint } from 'libpg-query';
import { stringList, typeSql } from '../sqlparse/ast.js';
import { expressionFrom, findToken, insideParentheses, tokenIndexAt } from '../sqlparse/slice.js';
import type { ColumnDefinition, TableConstraintDefinition } from '../migration/format.js';
import { FOREIGN_KEY_ACTIONS, MATCH_TYPES, Unconvertible, tableName, type ConvertContext, type Note } from './context.js';
import { defaultName } from './names.js';

export interface ConvertedColumn {
  column: ColumnDefinition;
  /** Named inline UNIQUE / PRIMARY KEY constraints, which columns cannot name: they become table constraints. */
  constraints: TableConstraintDefinition[];
  notes: Note[];
}

export function convertColumn(context: ConvertContext, table: string, definition: ColumnDef): ConvertedColumn {
  const name = definition.colname;
  if (!name || !definition.typeName) throw new Unconvertible('a column without a name or type');
  if (definition.collClause) throw new Unconvertible(`column "${name}" has a COLLATE clause, which the migration format cannot express`);
  if (definition.compression || definition.storage_name) throw new Unconvertible(`column "${name}" sets STORAGE or COMPRESSION`);
  const constraints = (definition.constraints ?? []).flatMap((node) => ('Constraint' in node && node.Constraint ? [node.Constraint] : []));
  const column: ColumnDefinition = { name, type: typeSql(definition.typeName) };
  const tableConstraints: TableConstraintDefinition[] = [];
  const notes: Note[] = [];
  let nullable = !definition.is_not_null;
  let pk = false;

  constraints.forEach((constraint, index) => {
    // Where the next clause begins: the end of this constraint's expression.
    const next = [...constraints.slice(index + 1).map((c) => c.location ?? Infinity), Infinity][0]!;
    switch (constraint.contype) {
      case 'CONSTR_NULL':
        nullable = true;
        break;
      case 'CONSTR_NOTNULL':
        nullable = false;
        break;
      case 'CONSTR_DEFAULT':
        column.default = defaultText(context, constraint, next);
        break;
      case 'CONSTR_CHECK':
        if (constraint.is_enforced === false) throw new Unconvertible(`the CHECK on "${name}" is NOT ENFORCED`);
        column.check = { name: constraint.conname ?? defaultName(table, [name], 'check'), constraint: checkText(context, constraint) };
        if (constraint.is_no_inherit) column.check.no_inherit = true;
        break;
      case 'CONSTR_PRIMARY':
      case 'CONSTR_UNIQUE': {
        const primary = constraint.contype === 'CONSTR_PRIMARY';
        if (constraint.options?.length || constraint.indexspace || constraint.deferrable || makesDeferrable(constraints[index + 1])) {
          throw new Unconvertible(`the ${primary ? 'PRIMARY KEY' : 'UNIQUE'} clause on "${name}" has index options the column form cannot carry`);
        }
        if (constraint.conname) {
          tableConstraints.push({ name: constraint.conname, type: primary ? 'primary_key' : 'unique', columns: [name] });
          if (constraint.nulls_not_distinct) tableConstraints.at(-1)!.nulls_not_distinct = true;
        } else if (primary) {
          pk = true;
        } else {
          if (constraint.nulls_not_distinct) throw new Unconvertible(`UNIQUE NULLS NOT DISTINCT on "${name}" needs a named constraint`);
          column.unique = true;
        }
        if (primary) nullable = false;
        break;
      }
      case 'CONSTR_FOREIGN':
        column.references = reference(context, table, name, constraint);
        break;
      // DEFERRABLE, INITIALLY DEFERRED and friends follow the constraint they modify as entries of their own.
      case 'CONSTR_ATTR_DEFERRABLE':
      case 'CONSTR_ATTR_DEFERRED':
        if (modified(constraints, index)?.contype !== 'CONSTR_FOREIGN' || !column.references) {
          throw new Unconvertible(`a deferrable constraint on "${name}" other than a foreign key has no column form`);
        }
        if (constraint.contype === 'CONSTR_ATTR_DEFERRABLE') column.references.deferrable = true;
        else column.references.initially_deferred = true;
        break;
      case 'CONSTR_ATTR_NOT_DEFERRABLE':
      case 'CONSTR_ATTR_IMMEDIATE':
      case 'CONSTR_ATTR_ENFORCED':
        break;
      case 'CONSTR_GENERATED':
        if (constraint.generated_kind === 'v') throw new Unconvertible(`"${name}" is a VIRTUAL generated column; the migration format has stored ones only`);
        column.generated = { expression: generatedText(context, constraint) };
        break;
      case 'CONSTR_IDENTITY': {
        const options = identityOptions(context, constraint);
        column.generated = { identity: { user_specified_values: constraint.generated_when === 'd' ? 'BY DEFAULT' : 'ALWAYS' } };
        if (options) column.generated.identity!.sequence_options = options;
        nullable = false;
        break;
      }
      default:
        throw new Unconvertible(`column "${name}" has a ${constraint.contype?.replace('CONSTR_', '')} clause the migration format cannot express`);
    }
  });
  if (pk) column.pk = true;
  column.nullable = nullable;
  return { column, constraints: tableConstraints, notes };
}

/** The constraint an attribute entry at `index` modifies: the nearest one before it that is not an attribute. */
function modified(constraints: Constraint[], index: number): Constraint | undefined {
  return constraints.slice(0, index).reverse().find((c) => !c.contype?.startsWith('CONSTR_ATTR_'));
}

function makesDeferrable(next: Constraint | undefined): boolean {
  return next?.contype === 'CONSTR_ATTR_DEFERRABLE' || next?.contype === 'CONSTR_ATTR_DEFERRED';
}

function defaultText(context: ConvertContext, constraint: Constraint, stopByte: number): string {
  const keyword = keywordAfter(context, constraint, 'default');
  return expressionFrom(context.parsed, context.statement, keyword + 1, stopByte).text;
}

/** The text inside CHECK ( ... ) of a column or table constraint. */
export function checkText(context: ConvertContext, constraint: Constraint): string {
  return parenthesesAfter(context, constraint, 'check');
}

function generatedText(context: ConvertContext, constraint: Constraint): string {
  return parenthesesAfter(context, constraint, 'as');
}

function identityOptions(context: ConvertContext, constraint: Constraint): string | undefined {
  const keyword = keywordAfter(context, constraint, 'identity');
  return insideParentheses(context.parsed, context.statement, keyword + 1)?.text;
}

/** Index of `word`'s token at or after the constraint's start. */
export function keywordAfter(context: ConvertContext, constraint: Constraint, word: string): number {
  const start = tokenIndexAt(context.parsed, context.statement, constraint.location ?? context.statement.start);
  const found = findToken(context.parsed, context.statement, start, word);
  if (found === undefined) throw new Unconvertible(`could not find ${word.toUpperCase()} in the statement text`);
  return found;
}

export function parenthesesAfter(context: ConvertContext, constraint: Constraint, word: string): string {
  const keyword = keywordAfter(context, constraint, word);
  const inside = insideParentheses(context.parsed, context.statement, keyword + 1);
  if (!inside) throw new Unconvertible(`could not read the expression after ${word.toUpperCase()}`);
  return inside.text;
}

function reference(context: ConvertContext, table: string, column: string, constraint: Constraint): NonNullable<ColumnDefinition['references']> {
  const target = tableName(context, constraint.pktable);
  if ('problem' in target) throw new Unconvertible(`the foreign key on "${column}": ${target.problem}`);
  const columns = stringList(constraint.pk_attrs);
  if (columns.length !== 1) {
    throw new Unconvertible(`the foreign key on "${column}" does not name the referenced column (tandem cannot look up ${target.name}'s primary key)`);
  }
  const result: NonNullable<ColumnDefinition['references']> = {
    name: constraint.conname ?? defaultName(table, [column], 'fkey'),
    table: target.name,
    column: columns[0]!,
  };
  Object.assign(result, foreignKeyOptions(constraint));
  if (constraint.deferrable) result.deferrable = true;
  if (constraint.initdeferred) result.initially_deferred = true;
  return result;
}

/** MATCH / ON DELETE / ON UPDATE, written only when they differ from the defaults. */
export function foreignKeyOptions(constraint: Constraint): Partial<Pick<NonNullable<ColumnDefinition['references']>, 'match_type' | 'on_delete' | 'on_update'>> {
  if (constraint.is_enforced === false) throw new Unconvertible('the foreign key is NOT ENFORCED');
  const options: Partial<Pick<NonNullable<ColumnDefinition['references']>, 'match_type' | 'on_delete' | 'on_update'>> = {};
  const match = MATCH_TYPES[(constraint.fk_matchtype ?? 's') as keyof typeof MATCH_TYPES];
  if (match && match !== 'SIMPLE') options.match_type = match;
  const onDelete = FOREIGN_KEY_ACTIONS[(constraint.fk_del_action ?? 'a') as keyof typeof FOREIGN_KEY_ACTIONS];
  if (onDelete && onDelete !== 'NO ACTION') options.on_delete = onDelete;
  const onUpdate = FOREIGN_KEY_ACTIONS[(constraint.fk_upd_action ?? 'a') as keyof typeof FOREIGN_KEY_ACTIONS];
  if (onUpdate && onUpdate !== 'NO ACTION') options.on_update = onUpdate;
  return options;
}
