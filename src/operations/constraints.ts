/** create_constraint, drop_constraint, drop_multicolumn_constraint and rename_constraint. */
import type { OperationPlanner } from './types.js';
import { column as modelColumn, findConstraint, newVersionNames, oldVersionNames, type ModelTable } from '../engine/model.js';
import { sqlStep } from '../engine/plan.js';
import type { Planner } from '../engine/planner.js';
import { renameColumnRefs } from '../engine/rewrite.js';
import type { ShadowColumn } from '../engine/shadow.js';
import { qualified, quoteIdent } from '../engine/sql.js';
import { TandemError } from '../errors.js';
import { checkBody, tableForeignKeyBody, tableForeignKeySql } from './sql-fragments.js';

/**
 * A constraint over one or more columns. On an existing table each column gets a shadow (with its
 * own `up`/`down`) and the constraint is built on the shadows: CHECK and FOREIGN KEY NOT VALID then
 * validated, UNIQUE and PRIMARY KEY as a concurrently built index attached at complete.
 */
export const createConstraint: OperationPlanner<'create_constraint'> = (body, planner) => {
  const table = planner.model.table(body.table, 'table');
  if (findConstraint(table, body.name)) {
    throw new TandemError('constraint_exists', `table "${table.name}" already has a constraint "${body.name}"`, { field: 'name' });
  }
  const columns = body.columns ?? [];
  if (body.type !== 'check' && !columns.length) {
    throw new TandemError('constraint_columns', `a ${body.type} constraint needs columns`, { field: 'columns' });
  }
  columns.forEach((name, i) => modelColumn(table, name, `columns[${i}]`));
  for (const side of ['up', 'down'] as const) {
    for (const name of Object.keys(body[side] ?? {})) {
      if (!columns.includes(name)) {
        throw new TandemError('constraint_sql_column', `"${name}" is not one of the constraint's columns`, { field: `${side}.${name}` });
      }
    }
  }
  if (body.type === 'primary_key' && table.primaryKey.length) {
    throw new TandemError('primary_key_exists', `table "${table.name}" already has a primary key (${table.primaryKey.join(', ')})`, {
      field: 'type',
      hint: 'drop it first (drop_constraint), in an earlier migration',
    });
  }
  if (body.type === 'foreign_key' && !body.references) {
    throw new TandemError('constraint_references', 'a foreign_key constraint needs references', { field: 'references' });
  }
  if (body.type === 'check' && !body.check) {
    throw new TandemError('constraint_check', 'a check constraint needs its check expression', { field: 'check' });
  }

  if (table.created) {
    const tableSql = qualified(planner.model.schema, table.physical);
    const physical = columns.map((c) => quoteIdent(modelColumn(table, c, 'columns').physical));
    let sql: string;
    if (body.type === 'check') sql = `CONSTRAINT ${quoteIdent(body.name)} ${checkBody(body.check!, body.no_inherit)}`;
    else if (body.type === 'foreign_key') sql = tableForeignKeySql(planner.model, body.name, columns.map((c) => modelColumn(table, c, 'columns').physical), body.references!, {}, 'references');
    else sql = `CONSTRAINT ${quoteIdent(body.name)} ${body.type === 'unique' ? 'UNIQUE' : 'PRIMARY KEY'} (${physical.join(', ')})${indexOptions(body.index_parameters, 'constraint')}`;
    planner.start('expand', sqlStep(`add constraint ${body.name}`, `ALTER TABLE ${tableSql} ADD ${sql}`));
    table.constraints.push({ name: body.name, physical: body.name, type: body.type, columns: [...columns] });
    if (body.type === 'primary_key') table.primaryKey = [...columns];
    return;
  }

  const upNames = oldVersionNames(table);
  const shadows = columns.map((name) => {
    const column = modelColumn(table, name, 'columns');
    const shadow = planner.shadowColumn(table, column);
    const up = body.up?.[name];
    if (up) shadow.up.push(planner.expression(up, upNames, shadow.type, `up.${name}`));
    if (body.type === 'primary_key') shadow.nullable = column.nullable = false;
    return shadow;
  });
  for (const shadow of shadows) {
    const down = body.down?.[shadow.column.name];
    if (down) shadow.down.unshift(planner.expression(down, newVersionNames(table), oldTypeOf(table, shadow), `down.${shadow.column.name}`));
  }
  const shadowTable = planner.shadowTable(table)!;
  const physical = shadows.map((s) => s.shadow);
  switch (body.type) {
    case 'check':
      shadowTable.added.push({ name: body.name, kind: 'check', body: checkBody(renameColumnRefs(body.check!, physicalNames(table)), body.no_inherit), origin: planner.origin });
      break;
    case 'foreign_key':
      shadowTable.added.push({
        name: body.name,
        kind: 'foreign_key',
        body: tableForeignKeyBody(planner.model, physical, body.references!, {}, 'references'),
        origin: planner.origin,
      });
      break;
    case 'unique':
    case 'primary_key':
      shadowTable.added.push({ name: body.name, kind: body.type, columns: physical, indexOptions: indexOptions(body.index_parameters, 'index'), origin: planner.origin });
      if (body.type === 'primary_key') table.primaryKey = [...columns];
      break;
  }
  table.constraints.push({ name: body.name, physical: body.name, type: body.type, columns: [...columns] });
};

/** Drops a single-column constraint: the new version's shadow of the column has everything but it. */
export const dropConstraint: OperationPlanner<'drop_constraint'> = (body, planner) => {
  const { table, constraint } = constraintOf(planner, body.table, body.name);
  if (constraint.columns.length > 1) {
    throw new TandemError('constraint_multicolumn', `constraint "${body.name}" spans columns ${constraint.columns.join(', ')}`, {
      field: 'name',
      hint: 'use drop_multicolumn_constraint, with up and down for each column',
    });
  }
  dropWithShadows(planner, table, constraint, (column) => (column === constraint.columns[0] ? { up: body.up, down: body.down } : {}), '');
};

export const dropMulticolumnConstraint: OperationPlanner<'drop_multicolumn_constraint'> = (body, planner) => {
  const { table, constraint } = constraintOf(planner, body.table, body.name);
  for (const side of ['up', 'down'] as const) {
    for (const name of Object.keys(body[side] ?? {})) {
      if (!constraint.columns.includes(name)) {
        throw new TandemError('constraint_sql_column', `"${name}" is not one of the columns of constraint "${body.name}" (${constraint.columns.join(', ')})`, {
          field: `${side}.${name}`,
        });
      }
    }
  }
  dropWithShadows(planner, table, constraint, (column) => ({ up: body.up?.[column], down: body.down?.[column] }), '.');
};

export const renameConstraint: OperationPlanner<'rename_constraint'> = (body, planner) => {
  const { table, constraint } = constraintOf(planner, body.table, body.from, 'from');
  if (findConstraint(table, body.to)) {
    throw new TandemError('constraint_exists', `table "${table.name}" already has a constraint "${body.to}"`, { field: 'to' });
  }
  // The new name applies at complete (the planner renames from the physical name); nothing reads
  // constraint names through the views, so both versions are unaffected until then.
  constraint.name = body.to;
};

function constraintOf(planner: Planner, tableName: string, name: string, field = 'name') {
  const table = planner.model.table(tableName, 'table');
  const constraint = findConstraint(table, name);
  if (!constraint) {
    const known = table.constraints.map((c) => c.name);
    throw new TandemError('constraint_unknown', `table "${table.name}" has no constraint "${name}"`, {
      field,
      hint: known.length ? `its constraints: ${known.join(', ')}` : 'it has no constraints',
    });
  }
  return { table, constraint };
}

function dropWithShadows(
  planner: Planner,
  table: ModelTable,
  constraint: ReturnType<typeof constraintOf>['constraint'],
  expressions: (column: string) => { up?: string; down?: string },
  separator: string,
): void {
  const tableSql = qualified(planner.model.schema, table.physical);
  table.constraints = table.constraints.filter((c) => c !== constraint);
  if (constraint.type === 'primary_key') table.primaryKey = [];
  if (table.created) {
    planner.start('expand', sqlStep(`drop constraint ${constraint.name}`, `ALTER TABLE ${tableSql} DROP CONSTRAINT IF EXISTS ${quoteIdent(constraint.physical)}`));
    return;
  }
  const inbound = table.info?.inboundForeignKeys.filter((fk) => fk.referencedColumns.some((c) => constraint.columns.includes(c))) ?? [];
  if ((constraint.type === 'unique' || constraint.type === 'primary_key') && inbound.length) {
    throw new TandemError('constraint_referenced', `foreign key ${inbound.map((fk) => `"${fk.name}" of ${fk.table}`).join(', ')} depends on constraint "${constraint.name}"`, {
      field: 'name',
      hint: 'drop those foreign keys first',
    });
  }
  const upNames = oldVersionNames(table);
  const shadows: ShadowColumn[] = constraint.columns.map((name) => {
    const shadow = planner.shadowColumn(table, modelColumn(table, name, 'name'));
    const { up } = expressions(name);
    const field = separator ? `up${separator}${name}` : 'up';
    if (up) shadow.up.push(planner.expression(up, upNames, shadow.type, field));
    return shadow;
  });
  for (const shadow of shadows) {
    const { down } = expressions(shadow.column.name);
    const field = separator ? `down${separator}${shadow.column.name}` : 'down';
    if (down) shadow.down.unshift(planner.expression(down, newVersionNames(table), oldTypeOf(table, shadow), field));
  }
  planner.shadowTable(table)!.dropped.add(constraint.physical);
}

function oldTypeOf(table: ModelTable, shadow: ShadowColumn): string {
  return table.info!.columns.find((c) => c.name === shadow.original)!.type;
}

/** Visible name → physical column, for expressions written in the new version's names. */
function physicalNames(table: ModelTable): Map<string, string> {
  return new Map(table.columns.map((c) => [c.name, c.physical]));
}

/** INCLUDE / WITH / TABLESPACE, as a table constraint or as CREATE INDEX writes them. */
function indexOptions(parameters: { include_columns?: string[]; storage_parameters?: string; tablespace?: string } | undefined, form: 'constraint' | 'index'): string {
  if (!parameters) return '';
  let sql = '';
  if (parameters.include_columns?.length) sql += ` INCLUDE (${parameters.include_columns.map(quoteIdent).join(', ')})`;
  if (parameters.storage_parameters) sql += ` WITH (${parameters.storage_parameters})`;
  if (parameters.tablespace) sql += form === 'constraint' ? ` USING INDEX TABLESPACE ${quoteIdent(parameters.tablespace)}` : ` TABLESPACE ${quoteIdent(parameters.tablespace)}`;
  return sql;
}
