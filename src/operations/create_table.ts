import type { OperationPlanner } from './types.js';
import type { ModelColumn, ModelTable } from '../engine/model.js';
import { sqlStep } from '../engine/plan.js';
import { qualified, quoteIdent, quoteLiteral } from '../engine/sql.js';
import { TandemError } from '../errors.js';
import {
  checkSql,
  columnForeignKeySql,
  deferrable,
  generatedSql,
  indexParametersSql,
  isIdentity,
  tableForeignKeySql,
} from './sql-fragments.js';

/**
 * A new table: nothing reads it yet, so it is created whole at start (every constraint included)
 * and only the new version's schema shows it. Rollback drops it.
 */
export const createTable: OperationPlanner<'create_table'> = (body, planner) => {
  const { model } = planner;
  if (model.findTable(body.name) || model.relationNameTaken(body.name)) {
    throw new TandemError('table_exists', `a table or index named "${body.name}" already exists in schema "${model.schema}"`, { field: 'name' });
  }
  const seen = new Set<string>();
  body.columns.forEach((c, i) => {
    if (seen.has(c.name)) throw new TandemError('column_duplicate', `column "${c.name}" is defined twice`, { field: `columns[${i}].name` });
    seen.add(c.name);
  });

  const table = qualified(model.schema, body.name);
  const primaryKey = body.columns.filter((c) => c.pk).map((c) => c.name);
  const definitions = body.columns.map((c, i) => {
    let sql = `${quoteIdent(c.name)} ${c.type}`;
    if (c.unique) sql += ' UNIQUE';
    // pgroll's columns are NOT NULL unless they say nullable: true; identity columns always are.
    if (!c.nullable && !isIdentity(c) && !c.pk) sql += ' NOT NULL';
    if (c.default !== undefined) sql += ` DEFAULT ${c.default}`;
    sql += generatedSql(c);
    if (c.check) sql += ` ${checkSql(c.check.name, c.check.constraint, c.check.no_inherit)}`;
    return { sql, references: c.references, index: i };
  });

  const tableConstraints: string[] = [];
  if (primaryKey.length) tableConstraints.push(`PRIMARY KEY (${primaryKey.map(quoteIdent).join(', ')})`);

  // Foreign keys may point at this very table, so they are resolved once the model knows it.
  const modelTable: ModelTable = {
    name: body.name,
    physical: body.name,
    created: true,
    columns: body.columns.map(
      (c): ModelColumn => ({
        name: c.name,
        physical: c.name,
        type: c.type,
        nullable: Boolean(c.nullable) && !c.pk && !isIdentity(c),
        default: c.default ?? null,
        identity: c.generated?.identity ? (c.generated.identity.user_specified_values === 'BY DEFAULT' ? 'd' : 'a') : '',
        generated: c.generated?.expression ? 's' : '',
        comment: c.comment ?? null,
        original: null,
      }),
    ),
    constraints: [],
    primaryKey,
    grants: [],
  };
  model.addTable(modelTable);

  for (const d of definitions) {
    if (d.references) {
      tableConstraints.push(columnForeignKeySql(model, body.columns[d.index]!.name, d.references, `columns[${d.index}].references`));
    }
  }

  (body.constraints ?? []).forEach((constraint, i) => {
    const field = `constraints[${i}]`;
    const columns = constraint.columns ?? [];
    columns.forEach((name, j) => {
      if (!seen.has(name)) {
        throw new TandemError('column_unknown', `column "${name}" is not one of the table's columns`, { field: `${field}.columns[${j}]` });
      }
    });
    const named = `CONSTRAINT ${quoteIdent(constraint.name)}`;
    const cols = `(${columns.map(quoteIdent).join(', ')})`;
    const needColumns = () => {
      if (!columns.length) throw new TandemError('constraint_columns', `a ${constraint.type} constraint needs columns`, { field: `${field}.columns` });
    };
    switch (constraint.type) {
      case 'primary_key':
        needColumns();
        if (primaryKey.length) {
          throw new TandemError('primary_key_twice', 'the table has pk columns and a primary_key constraint; use one', { field });
        }
        tableConstraints.push(`${named} PRIMARY KEY ${cols}${indexParametersSql(constraint.index_parameters)}${deferrable(constraint)}`);
        modelTable.primaryKey = [...columns];
        break;
      case 'unique': {
        needColumns();
        const nulls = constraint.nulls_not_distinct ? ' NULLS NOT DISTINCT' : '';
        tableConstraints.push(`${named} UNIQUE${nulls} ${cols}${indexParametersSql(constraint.index_parameters)}${deferrable(constraint)}`);
        break;
      }
      case 'check':
        if (!constraint.check) throw new TandemError('constraint_check', 'a check constraint needs its check expression', { field: `${field}.check` });
        tableConstraints.push(checkSql(constraint.name, constraint.check, constraint.no_inherit));
        break;
      case 'foreign_key':
        needColumns();
        if (!constraint.references) {
          throw new TandemError('constraint_references', 'a foreign_key constraint needs references', { field: `${field}.references` });
        }
        tableConstraints.push(tableForeignKeySql(model, constraint.name, columns, constraint.references, constraint, `${field}.references`));
        break;
      case 'exclude': {
        const exclude = constraint.exclude;
        if (!exclude?.elements) throw new TandemError('constraint_exclude', 'an exclude constraint needs exclude.elements', { field: `${field}.exclude` });
        const method = exclude.index_method ? ` USING ${exclude.index_method}` : '';
        const where = exclude.predicate ? ` WHERE (${exclude.predicate})` : '';
        tableConstraints.push(`${named} EXCLUDE${method} (${exclude.elements})${indexParametersSql(constraint.index_parameters)}${where}${deferrable(constraint)}`);
        break;
      }
    }
    modelTable.constraints.push({ name: constraint.name, physical: constraint.name, type: constraint.type, columns: [...columns] });
  });

  const statements = [`CREATE TABLE ${table} (\n  ${[...definitions.map((d) => d.sql), ...tableConstraints].join(',\n  ')}\n)`];
  if (body.comment !== undefined) statements.push(`COMMENT ON TABLE ${table} IS ${quoteLiteral(body.comment)}`);
  for (const c of body.columns) {
    if (c.comment !== undefined) statements.push(`COMMENT ON COLUMN ${table}.${quoteIdent(c.name)} IS ${quoteLiteral(c.comment)}`);
  }
  planner.start('expand', sqlStep(`create table ${body.name}`, statements));
  planner.rollback(sqlStep(`drop table ${body.name}`, `DROP TABLE IF EXISTS ${table}`));
};
