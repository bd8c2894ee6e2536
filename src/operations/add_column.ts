import type { OperationPlanner } from './types.js';
import { addColumn as addModelColumn, oldVersionNames, physicalColumnTaken, requireNewColumnName, type ModelColumn, type ModelTable } from '../core/model.js';
import type { Planner } from '../core/planner.js';
import type { ColumnDefinition } from '../migration/format.js';
import { sqlStep, type SqlStep } from '../core/steps.js';
import { derivedIdent } from '../core/quote.js';
import { TandemError } from '../errors/index.js';
import {
  addColumnSql,
  addConstraintNotValid,
  addConstraintSql,
  attachIndexSql,
  commentOnColumnSql,
  createIndexConcurrently,
  createUniqueIndexConcurrentlySql,
  dropColumn,
  dropIndexConcurrently,
  lockTargetOf,
  NOT_NULL_CHECK_PREFIX,
  notNullCheck,
  setDefaultSql,
  validateConstraint,
  type DdlTable,
} from '../core/ddl.js';
import { checkBody, checkSql, columnForeignKeyBody, columnForeignKeySql, generatedSql, isIdentity } from '../core/definition-sql.js';

/**
 * A column the new version sees and the old one does not. On an existing table it is added in ways
 * that never rewrite the table nor scan it under a strong lock:
 * - a non-volatile default is stored once in the catalog (PostgreSQL 11+); a volatile one is set
 *   for new rows only, and existing rows are filled by the backfill;
 * - NOT NULL without such a default becomes a NOT VALID `IS NOT NULL` check while `up` fills the
 *   rows; complete validates it (no write lock), then SET NOT NULL uses the validated check instead
 *   of scanning;
 * - CHECK and FOREIGN KEY constraints are added NOT VALID and validated at complete;
 * - UNIQUE is an index built concurrently, attached as a constraint at complete.
 */
export const addColumn: OperationPlanner<'add_column'> = async (body, planner) => {
  const { model } = planner;
  const definition = body.column;
  const table = model.table(body.table, 'table');
  requireNewColumnName(table, definition.name, 'column.name');
  if (definition.pk) {
    throw new TandemError({ kind: 'add_column_pk' }, { field: 'column.pk' });
  }
  const ddlTable: DdlTable = { schema: model.schema, name: table.physical };
  const lockTarget = lockTargetOf(ddlTable);
  // A column of the same name may still exist physically (dropped or renamed away in this migration):
  // then the new one waits under a temporary name until complete.
  const physical = physicalColumnTaken(table, definition.name) ? derivedIdent('_tandem_new_', definition.name) : definition.name;
  const notNull = !definition.nullable && !isIdentity(definition);
  const generated = generatedSql(definition);

  const added: ModelColumn = {
    name: definition.name,
    physical,
    type: definition.type,
    nullable: !notNull,
    default: definition.default ?? null,
    identity: definition.generated?.identity ? (definition.generated.identity.user_specified_values === 'BY DEFAULT' ? 'd' : 'a') : '',
    generated: definition.generated?.expression ? 's' : '',
    comment: definition.comment ?? null,
    original: null,
  };

  if (table.created) {
    // Nothing reads this table yet: add the column complete.
    let sql = definition.type;
    if (definition.unique) sql += ' UNIQUE';
    if (notNull) sql += ' NOT NULL';
    if (definition.default !== undefined) sql += ` DEFAULT ${definition.default}`;
    sql += generated;
    if (definition.check) sql += ` ${checkSql(definition.check.name, definition.check.constraint, definition.check.no_inherit)}`;
    const statements = [addColumnSql(ddlTable, physical, sql)];
    if (definition.references) {
      statements.push(addConstraintSql(ddlTable, columnForeignKeySql(model, physical, definition.references, 'column.references')));
    }
    if (definition.comment !== undefined) statements.push(commentOnColumnSql(ddlTable, physical, definition.comment));
    planner.start('expand', sqlStep(`add column ${table.name}.${definition.name}`, statements, { lockTarget }));
    addModelColumn(table, added);
    expectColumn(planner, table, added, definition);
    return;
  }

  if (generated) {
    planner.warn(
      `adding ${definition.generated?.expression ? 'a generated' : 'an identity'} column rewrites table "${table.name}" under an ACCESS EXCLUSIVE lock; ` +
        'on a large table, add a plain column with `up` instead and switch it over later',
    );
  }

  let up = body.up || undefined;
  let fillOnly = false;
  let catalogDefault = false;
  if (definition.default !== undefined && !generated) {
    const volatility = await planner.inspector.volatility(definition.default, definition.type).catch((error: unknown) => {
      throw error instanceof TandemError ? error.at({ field: 'column.default' }) : error;
    });
    catalogDefault = volatility !== 'volatile';
    if (!catalogDefault && up === undefined) {
      // Existing rows get their own value of the volatile default, as a rewrite would have given them.
      up = definition.default;
      fillOnly = true;
    }
  }
  if (notNull && !catalogDefault && up === undefined && !generated) {
    throw new TandemError({ kind: 'add_column_not_null', column: definition.name }, { field: 'up' });
  }
  // With a catalog default and no `up`, NOT NULL holds for existing rows at once and costs nothing.
  const notNullNow = notNull && (generated !== '' || (catalogDefault && up === undefined));
  const notNullCheckName = notNull && !notNullNow ? derivedIdent(NOT_NULL_CHECK_PREFIX, `${table.physical}_${definition.name}`) : undefined;

  let addSql = definition.type;
  if (catalogDefault) addSql += ` DEFAULT ${definition.default}`;
  if (notNullNow) addSql += ' NOT NULL';
  addSql += generated;
  const expand = [addColumnSql(ddlTable, physical, addSql)];
  if (definition.default !== undefined && !catalogDefault && !generated) expand.push(setDefaultSql(ddlTable, physical, definition.default));
  if (definition.comment !== undefined) expand.push(commentOnColumnSql(ddlTable, physical, definition.comment));
  planner.start('expand', sqlStep(`add column ${table.name}.${definition.name}`, expand, { lockTarget }));
  planner.rollback(dropColumn(ddlTable, physical, `drop column ${table.name}.${physical}`));

  if (up !== undefined) {
    planner.sync(table.physical, {
      description: `${table.name}.${definition.name} from up`,
      newColumn: physical,
      up: [planner.expression(up, oldVersionNames(table), definition.type, fillOnly ? 'column.default' : 'up')],
      fillOnly,
    });
    planner.backfill(table.physical, physical);
  }

  const notNullSteps = notNullCheckName ? notNullCheck(ddlTable, physical, notNullCheckName, { dropIfExists: true }) : undefined;
  const constraints: { name: string; step: SqlStep }[] = [];
  if (notNullSteps) constraints.push({ name: notNullCheckName!, step: sqlStep(`add constraint ${notNullCheckName} NOT VALID`, notNullSteps.add, { lockTarget }) });
  if (definition.check) {
    const body = checkBody(definition.check.constraint, definition.check.no_inherit);
    constraints.push({ name: definition.check.name, step: addConstraintNotValid(ddlTable, definition.check.name, body) });
  }
  if (definition.references) {
    const body = columnForeignKeyBody(model, physical, definition.references, 'column.references');
    constraints.push({ name: definition.references.name, step: addConstraintNotValid(ddlTable, definition.references.name, body) });
  }
  for (const constraint of constraints) {
    planner.start('constrain', constraint.step);
    planner.complete('validate', validateConstraint(ddlTable, constraint.name));
  }

  if (definition.unique) {
    const index = derivedIdent('_tandem_uq_', `${table.physical}_${definition.name}`);
    const constraintName = derivedIdent('', `${table.name}_${definition.name}_key`);
    planner.start(
      'backfill',
      createIndexConcurrently(ddlTable, index, createUniqueIndexConcurrentlySql(ddlTable, index, [physical]), `build unique index ${index} concurrently`),
    );
    planner.rollback(dropIndexConcurrently(model.schema, index, `drop index ${index}`));
    planner.complete(
      'finish',
      sqlStep(`attach unique index as constraint ${constraintName}`, attachIndexSql(ddlTable, constraintName, 'unique', index), { lockTarget }),
    );
    model.addIndex(index);
  }

  // The validated check proves no NULLs, so SET NOT NULL skips its full-table scan.
  if (notNullSteps) planner.complete('finish', sqlStep(`set ${table.name}.${definition.name} NOT NULL`, notNullSteps.set, { lockTarget }));

  // A temporary physical name is renamed to the final one at complete (the planner does all renames).
  addModelColumn(table, added);
  expectColumn(planner, table, added, definition);
};

/** The column and the constraints it was added with must be there after complete. */
function expectColumn(planner: Planner, table: ModelTable, column: ModelColumn, definition: ColumnDefinition): void {
  planner.expect({ kind: 'column', table, column });
  const names = [definition.check?.name, definition.references?.name];
  if (definition.unique && !table.created) names.push(derivedIdent('', `${table.name}_${definition.name}_key`));
  for (const name of names) if (name) planner.expect({ kind: 'constraint', table, column, name });
}
