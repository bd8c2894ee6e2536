/** create_constraint, drop_constraint, drop_multicolumn_constraint and rename_constraint. */
import type { OperationPlanner } from './types.js';
import type { OperationBody } from '../migration/format.js';
import {
  addConstraint,
  changeColumn,
  column as modelColumn,
  dropConstraint as dropModelConstraint,
  findConstraint,
  freeConstraintName,
  inboundForeignKeysLeft,
  newVersionNames,
  oldVersionNames,
  renameConstraint as renameModelConstraint,
  type ModelColumn,
  type ModelTable,
} from '../core/model.js';
import { sqlStep } from '../core/steps.js';
import type { Planner } from '../core/planner.js';
import { renameColumnRefs } from '../core/rewrite.js';
import type { ShadowColumn } from '../core/shadow.js';
import { derivedIdent, quoteIdent } from '../core/quote.js';
import {
  addConstraintNotValid,
  addConstraintSql,
  attachIndexSql,
  createIndexConcurrently,
  createUniqueIndexConcurrentlySql,
  dropConstraint as dropConstraintStep,
  dropIndexConcurrently,
  lockTargetOf,
  validateConstraint,
} from '../core/ddl.js';
import { TandemError } from '../errors/index.js';
import { checkBody, tableForeignKeyBody, tableForeignKeySql } from '../core/definition-sql.js';

/**
 * A constraint over one or more columns. On an existing table each column gets a shadow (with its
 * own `up`/`down`) and the constraint is built on the shadows: CHECK and FOREIGN KEY NOT VALID then
 * validated, UNIQUE and PRIMARY KEY as a concurrently built index attached at complete.
 */
export const createConstraint: OperationPlanner<'create_constraint'> = (body, planner) => {
  const table = planner.model.table(body.table, 'table');
  if (findConstraint(table, body.name)) {
    throw new TandemError({ kind: 'constraint_exists', table: table.name, constraint: body.name }, { field: 'name' });
  }
  const columns = body.columns ?? [];
  if (body.type !== 'check' && !columns.length) {
    throw new TandemError({ kind: 'constraint_columns', type: body.type }, { field: 'columns' });
  }
  columns.forEach((name, i) => modelColumn(table, name, `columns[${i}]`));
  for (const side of ['up', 'down'] as const) {
    for (const name of Object.keys(body[side] ?? {})) {
      if (!columns.includes(name)) {
        throw new TandemError({ kind: 'constraint_sql_column', column: name }, { field: `${side}.${name}` });
      }
    }
  }
  if (body.type === 'primary_key' && table.primaryKey.length) {
    throw new TandemError({ kind: 'primary_key_exists', table: table.name, columns: [...table.primaryKey] }, { field: 'type' });
  }
  if (body.type === 'foreign_key' && !body.references) {
    throw new TandemError({ kind: 'constraint_references' }, { field: 'references' });
  }
  if (body.type === 'check' && !body.check) {
    throw new TandemError({ kind: 'constraint_check' }, { field: 'check' });
  }

  if (table.created) {
    const ddlTable = { schema: planner.model.schema, name: table.physical };
    const physical = columns.map((c) => quoteIdent(modelColumn(table, c, 'columns').physical));
    let sql: string;
    if (body.type === 'check') sql = `CONSTRAINT ${quoteIdent(body.name)} ${checkBody(body.check!, body.no_inherit)}`;
    else if (body.type === 'foreign_key') sql = tableForeignKeySql(planner.model, body.name, columns.map((c) => modelColumn(table, c, 'columns').physical), body.references!, {}, 'references');
    else sql = `CONSTRAINT ${quoteIdent(body.name)} ${body.type === 'unique' ? 'UNIQUE' : 'PRIMARY KEY'} (${physical.join(', ')})${indexOptions(body.index_parameters, 'constraint')}`;
    planner.start('expand', sqlStep(`add constraint ${body.name}`, addConstraintSql(ddlTable, sql), { lockTarget: lockTargetOf(ddlTable) }));
    const constraint = addConstraint(table, { name: body.name, physical: body.name, type: body.type, columns: [...columns] });
    planner.expect({ kind: 'constraint', table, constraint });
    return;
  }

  const modelColumns = columns.map((name) => modelColumn(table, name, 'columns'));
  // A column this migration adds is read by nothing old: the constraint goes on it directly.
  const physicalName = freeConstraintName(table, body.name);
  if (modelColumns.length && modelColumns.every((c) => !c.original)) {
    addOnNewColumns(body, planner, table, modelColumns, physicalName);
    return;
  }

  const upNames = oldVersionNames(table);
  const shadows = modelColumns.map((column) => {
    if (!column.original) {
      chainUpOnNewColumn(body, planner, table, column);
      if (body.type === 'primary_key') changeColumn(column, { nullable: false });
      return undefined;
    }
    const shadow = planner.shadowColumn(table, column);
    const up = body.up?.[column.name];
    if (up) shadow.up.push(planner.expression(up, upNames, column.type, `up.${column.name}`));
    if (body.type === 'primary_key') changeColumn(column, { nullable: false });
    return shadow;
  });
  for (const shadow of shadows) {
    if (!shadow) continue;
    const down = body.down?.[shadow.column.name];
    if (down) shadow.down.unshift(planner.expression(down, newVersionNames(table), oldTypeOf(table, shadow), `down.${shadow.column.name}`));
  }
  const shadowTable = planner.shadowTable(table)!;
  const physical = modelColumns.map((c) => c.physical);
  switch (body.type) {
    case 'check':
      shadowTable.added.push({ name: physicalName, kind: 'check', body: checkBody(renameColumnRefs(body.check!, physicalNames(table)), body.no_inherit), origin: planner.origin });
      break;
    case 'foreign_key':
      shadowTable.added.push({
        name: physicalName,
        kind: 'foreign_key',
        body: tableForeignKeyBody(planner.model, physical, body.references!, {}, 'references'),
        origin: planner.origin,
      });
      break;
    case 'unique':
    case 'primary_key':
      // Attached at complete, once the old columns (and any constraint of that name on them) are gone.
      shadowTable.added.push({ name: body.name, kind: body.type, columns: physical, indexOptions: indexOptions(body.index_parameters, 'index'), origin: planner.origin });
      break;
  }
  const isIndexed = body.type === 'unique' || body.type === 'primary_key';
  const constraint = addConstraint(table, { name: body.name, physical: isIndexed ? body.name : physicalName, type: body.type, columns: [...columns] });
  planner.expect({ kind: 'constraint', table, constraint });
};

/**
 * A constraint whose columns this migration adds: CHECK and FOREIGN KEY NOT VALID at start and
 * validated at complete, UNIQUE and PRIMARY KEY as an index built concurrently after the backfill and
 * attached at complete, as add_column does for its own constraints.
 */
function addOnNewColumns(body: OperationBody<'create_constraint'>, planner: Planner, table: ModelTable, columns: ModelColumn[], physicalName: string): void {
  const { model } = planner;
  const ddlTable = { schema: model.schema, name: table.physical };
  const lockTarget = lockTargetOf(ddlTable);
  for (const column of columns) {
    chainUpOnNewColumn(body, planner, table, column);
    if (body.type === 'primary_key') changeColumn(column, { nullable: false });
  }
  const physical = columns.map((c) => c.physical);
  if (body.type === 'check' || body.type === 'foreign_key') {
    const definition =
      body.type === 'check'
        ? checkBody(renameColumnRefs(body.check!, physicalNames(table)), body.no_inherit)
        : tableForeignKeyBody(model, physical, body.references!, {}, 'references');
    planner.start('constrain', addConstraintNotValid(ddlTable, physicalName, definition, { description: `add constraint ${body.name} NOT VALID` }));
    planner.rollback(dropConstraintStep(ddlTable, physicalName));
    planner.complete('validate', validateConstraint(ddlTable, physicalName));
    const constraint = addConstraint(table, { name: body.name, physical: physicalName, type: body.type, columns: columns.map((c) => c.name) });
    planner.expect({ kind: 'constraint', table, constraint });
    return;
  }
  const index = derivedIdent('_tandem_ix_', body.name);
  const indexSql = createUniqueIndexConcurrentlySql(ddlTable, index, physical, indexOptions(body.index_parameters, 'index'));
  planner.start('backfill', createIndexConcurrently(ddlTable, index, indexSql, `build unique index ${index} concurrently`));
  planner.rollback(dropIndexConcurrently(model.schema, index, `drop index ${index}`));
  planner.complete(
    'finish',
    sqlStep(`attach index ${index} as constraint ${body.name}`, attachIndexSql(ddlTable, body.name, body.type, index), { lockTarget }),
  );
  model.addIndex(index);
  const constraint = addConstraint(table, { name: body.name, physical: body.name, type: body.type, columns: columns.map((c) => c.name) });
  planner.expect({ kind: 'constraint', table, constraint });
}

/**
 * The constraint's `up` for a column this migration adds applies after the column's own `up`: the
 * old version never writes the column, so its value is always computed. `down` has nothing to do
 * (the old version does not see the column); an `up` that only names the column changes nothing.
 */
function chainUpOnNewColumn(body: OperationBody<'create_constraint'>, planner: Planner, table: ModelTable, column: ModelColumn): void {
  const up = body.up?.[column.name]?.trim();
  if (!up || up === column.name || up === quoteIdent(column.name)) return;
  const names = { ...oldVersionNames(table), [column.name]: { column: column.physical, type: column.type } };
  const expression = planner.expression(up, names, column.type, `up.${column.name}`);
  const rule = planner.syncRuleFor(table.physical, column.physical);
  if (rule) {
    rule.up = [...(rule.up ?? []), expression];
    planner.probe(expression);
    return;
  }
  planner.sync(table.physical, { description: `${table.name}.${column.name} from up`, newColumn: column.physical, up: [expression] });
  planner.backfill(table.physical, column.physical);
}

/** Drops a single-column constraint: the new version's shadow of the column has everything but it. */
export const dropConstraint: OperationPlanner<'drop_constraint'> = (body, planner) => {
  const { table, constraint } = constraintOf(planner, body.table, body.name);
  if (constraint.columns.length > 1) {
    throw new TandemError({ kind: 'constraint_multicolumn', constraint: body.name, columns: [...constraint.columns] }, { field: 'name' });
  }
  dropWithShadows(planner, table, constraint, (column) => (column === constraint.columns[0] ? { up: body.up, down: body.down } : {}), '');
};

export const dropMulticolumnConstraint: OperationPlanner<'drop_multicolumn_constraint'> = (body, planner) => {
  const { table, constraint } = constraintOf(planner, body.table, body.name);
  for (const side of ['up', 'down'] as const) {
    for (const name of Object.keys(body[side] ?? {})) {
      if (!constraint.columns.includes(name)) {
        throw new TandemError({ kind: 'constraint_sql_column', column: name, constraint: { name: body.name, columns: [...constraint.columns] } }, { field: `${side}.${name}` });
      }
    }
  }
  dropWithShadows(planner, table, constraint, (column) => ({ up: body.up?.[column], down: body.down?.[column] }), '.');
};

export const renameConstraint: OperationPlanner<'rename_constraint'> = (body, planner) => {
  const { table, constraint } = constraintOf(planner, body.table, body.from, 'from');
  if (findConstraint(table, body.to)) {
    throw new TandemError({ kind: 'constraint_exists', table: table.name, constraint: body.to }, { field: 'to' });
  }
  // The new name applies at complete (the planner renames from the physical name); nothing reads
  // constraint names through the views, so both versions are unaffected until then.
  renameModelConstraint(constraint, body.to);
};

function constraintOf(planner: Planner, tableName: string, name: string, field = 'name') {
  const table = planner.model.table(tableName, 'table');
  const constraint = findConstraint(table, name);
  if (!constraint) {
    const known = table.constraints.map((c) => c.name);
    throw new TandemError({ kind: 'constraint_unknown', table: table.name, constraint: name, known }, { field });
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
  dropModelConstraint(table, constraint);
  if (table.created) {
    planner.start('expand', dropConstraintStep({ schema: planner.model.schema, name: table.physical }, constraint.physical, `drop constraint ${constraint.name}`));
    return;
  }
  // Foreign keys that operations before this one dropped (or whose tables they dropped) no longer count.
  const inbound = inboundForeignKeysLeft(planner.model, table).filter((fk) => fk.referencedColumns.some((c) => constraint.columns.includes(c)));
  if ((constraint.type === 'unique' || constraint.type === 'primary_key') && inbound.length) {
    const foreignKeys = inbound.map((fk) => ({ name: fk.name, table: fk.table }));
    throw new TandemError({ kind: 'constraint_referenced', constraint: constraint.name, foreignKeys }, { field: 'name' });
  }
  const upNames = oldVersionNames(table);
  const shadows: ShadowColumn[] = constraint.columns.map((name) => {
    const shadow = planner.shadowColumn(table, modelColumn(table, name, 'name'));
    const { up } = expressions(name);
    const field = separator ? `up${separator}${name}` : 'up';
    if (up) shadow.up.push(planner.expression(up, upNames, shadow.column.type, field));
    return shadow;
  });
  for (const shadow of shadows) {
    const { down } = expressions(shadow.column.name);
    const field = separator ? `down${separator}${shadow.column.name}` : 'down';
    if (down) shadow.down.unshift(planner.expression(down, newVersionNames(table), oldTypeOf(table, shadow), field));
  }
  planner.shadowTable(table)!.dropped.add(constraint.physical);
  planner.model.dropExistingConstraint(table, constraint.physical);
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
