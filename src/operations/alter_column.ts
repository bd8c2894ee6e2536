import type { OperationPlanner } from './types.js';
import { addConstraint, changeColumn, column as findModelColumn, newVersionNames, oldVersionNames, type ModelColumn, type ModelTable } from '../core/model.js';
import { sqlStep } from '../core/steps.js';
import type { Planner } from '../core/planner.js';
import { renameColumnRefs } from '../core/rewrite.js';
import { copyExpression, type ShadowColumn } from '../core/shadow.js';
import { quoteIdent } from '../core/quote.js';
import {
  addConstraintSql,
  alterTypeSql,
  commentOnColumnSql,
  dropDefaultSql,
  dropNotNullSql,
  lockTargetOf,
  setDefaultSql,
  setNotNullSql,
} from '../core/ddl.js';
import { TandemError } from '../errors/index.js';
import { checkBody, checkSql, columnForeignKeyBody, columnForeignKeySql } from '../core/definition-sql.js';

const CHANGES = ['type', 'nullable', 'default', 'check', 'unique', 'references', 'comment'] as const;

/**
 * Changes a column while both versions use it: the new version gets a shadow column with the new
 * definition (see core/shadow.ts), kept in sync by `up` and `down`. A change to a column nobody
 * old reads (a table or column created in this migration) is made in place.
 */
export const alterColumn: OperationPlanner<'alter_column'> = (body, planner) => {
  const { model } = planner;
  const table = model.table(body.table, 'table');
  const column = findModelColumn(table, body.column, 'column');
  const changes = CHANGES.filter((k) => body[k] !== undefined);
  if (!changes.length) {
    throw new TandemError({ kind: 'alter_column_empty', table: body.table, column: body.column, changes: CHANGES });
  }
  if (column.generated) {
    throw new TandemError({ kind: 'alter_generated', column: body.column }, { field: 'column' });
  }

  if (table.created || !column.original) {
    alterInPlace(body, planner, table, column);
    return;
  }
  const earlier = planner.shadowTable(table)?.find(column);
  if (changes.length === 1 && changes[0] === 'comment' && earlier) {
    // The shadow is built with the column's comment.
    changeColumn(column, { comment: body.comment ?? null });
    return;
  }
  if (changes.length === 1 && changes[0] === 'comment') {
    // A comment changes nothing either version reads or writes.
    const ddlTable = { schema: model.schema, name: table.physical };
    const lockTarget = lockTargetOf(ddlTable);
    planner.start('expand', sqlStep(`comment on ${table.name}.${column.name}`, commentOnColumnSql(ddlTable, column.physical, body.comment!), { lockTarget }));
    planner.rollback(sqlStep(`restore comment of ${table.name}.${column.name}`, commentOnColumnSql(ddlTable, column.physical, column.comment), { lockTarget }));
    changeColumn(column, { comment: body.comment ?? null });
    return;
  }

  // Names for `up` are bound before this operation changes anything; chained operations on one
  // column see the value so far (held in the shadow) under the column's name.
  const upNames = oldVersionNames(table);
  if (earlier) upNames[column.name] = { column: earlier.shadow, type: column.type };
  const shadow = planner.shadowColumn(table, column);
  const previousType = column.type;
  // The column holds the shadow's definition: the shadow is built from it at the end of planning.
  changeColumn(column, { type: body.type, nullable: body.nullable, default: body.default, comment: body.comment });

  if (body.up) {
    // An earlier operation on this column without `up` copied the value: that copy comes first, so
    // this `up` sees the value so far and not an empty shadow.
    if (earlier && !shadow.up.length) shadow.up.push(copyExpression(shadow.original, oldTypeOf(table, shadow), previousType, shadow.origin, 'up'));
    shadow.up.push(planner.expression(body.up, upNames, column.type, 'up'));
  }
  if (body.down) {
    const downNames = newVersionNames(table);
    downNames[column.name] = { column: shadow.shadow, type: column.type };
    const oldType = oldTypeOf(table, shadow);
    // Later operations' `down` run first: each turns its value back into the one before it.
    shadow.down.unshift(planner.expression(body.down, downNames, earlier ? previousType : oldType, 'down'));
  }
  warnAboutNulls(body, planner, column);
  addConstraints(body, planner, table, shadow);
};

function oldTypeOf(table: ModelTable, shadow: ShadowColumn): string {
  return table.info!.columns.find((c) => c.name === shadow.original)!.type;
}

function warnAboutNulls(body: Parameters<typeof alterColumn>[0], planner: Planner, column: ModelColumn): void {
  if (body.nullable === false && !body.up) {
    planner.warn(`"${column.name}" becomes NOT NULL without \`up\`: until complete, the old version's writes of NULL are refused`);
  }
  if (body.nullable === true && !body.down) {
    planner.warn(`"${column.name}" accepts NULL in the new version, but not in the old one: without \`down\`, the new version's writes of NULL are refused until complete`);
  }
}

/** CHECK, UNIQUE and FOREIGN KEY asked for on the shadow; they refer to the new version's names. */
function addConstraints(body: Parameters<typeof alterColumn>[0], planner: Planner, table: ModelTable, shadow: ShadowColumn): void {
  const shadows = planner.shadowTable(table)!;
  const physicalNames = new Map(table.columns.filter((c) => c.physical !== c.name).map((c) => [c.name, c.physical]));
  physicalNames.set(shadow.column.name, shadow.shadow);
  if (shadow.original !== shadow.column.name) physicalNames.set(shadow.original, shadow.shadow);
  if (body.check) {
    const expression = renameColumnRefs(body.check.constraint, physicalNames);
    shadows.added.push({ name: body.check.name, kind: 'check', body: checkBody(expression, body.check.no_inherit), origin: planner.origin });
    const constraint = addConstraint(table, { name: body.check.name, physical: body.check.name, type: 'check', columns: [shadow.column.name] });
    planner.expect({ kind: 'constraint', table, constraint });
  }
  if (body.unique) {
    shadows.added.push({ name: body.unique.name, kind: 'unique', columns: [shadow.shadow], origin: planner.origin });
    const constraint = addConstraint(table, { name: body.unique.name, physical: body.unique.name, type: 'unique', columns: [shadow.column.name] });
    planner.expect({ kind: 'constraint', table, constraint });
  }
  if (body.references) {
    const sql = columnForeignKeyBody(planner.model, shadow.shadow, body.references, 'references');
    shadows.added.push({ name: body.references.name, kind: 'foreign_key', body: sql, origin: planner.origin });
    const constraint = addConstraint(table, { name: body.references.name, physical: body.references.name, type: 'foreign_key', columns: [shadow.column.name] });
    planner.expect({ kind: 'constraint', table, constraint });
  }
}

/** Nothing old reads this column: change it directly. */
function alterInPlace(body: Parameters<typeof alterColumn>[0], planner: Planner, table: ModelTable, column: ModelColumn): void {
  const ddlTable = { schema: planner.model.schema, name: table.physical };
  const physical = column.physical;
  const statements: string[] = [];
  if (body.type !== undefined) statements.push(alterTypeSql(ddlTable, physical, body.type, body.up));
  if (body.default !== undefined) statements.push(body.default === null ? dropDefaultSql(ddlTable, physical) : setDefaultSql(ddlTable, physical, body.default));
  if (body.nullable !== undefined) statements.push(body.nullable ? dropNotNullSql(ddlTable, physical) : setNotNullSql(ddlTable, physical));
  if (body.check) statements.push(addConstraintSql(ddlTable, checkSql(body.check.name, body.check.constraint, body.check.no_inherit)));
  if (body.unique) statements.push(addConstraintSql(ddlTable, `CONSTRAINT ${quoteIdent(body.unique.name)} UNIQUE (${quoteIdent(physical)})`));
  if (body.references) statements.push(addConstraintSql(ddlTable, columnForeignKeySql(planner.model, physical, body.references, 'references')));
  if (body.comment !== undefined) statements.push(commentOnColumnSql(ddlTable, physical, body.comment));
  changeColumn(column, { type: body.type, default: body.default, nullable: body.nullable, comment: body.comment });
  planner.start('expand', sqlStep(`alter column ${table.name}.${column.name}`, statements, { lockTarget: lockTargetOf(ddlTable) }));
  for (const name of [body.check?.name, body.unique?.name, body.references?.name]) if (name) planner.expect({ kind: 'constraint', table, column, name });
}
