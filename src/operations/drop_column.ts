import type { OperationPlanner } from './types.js';
import { column, dropColumn as dropModelColumn, newVersionNames } from '../core/model.js';
import { dropColumn as dropColumnStep } from '../core/ddl.js';

/**
 * The new version stops seeing the column at start; the old version keeps it until complete drops it.
 * `down` computes it for rows the new version writes, so old readers see a sensible value.
 */
export const dropColumn: OperationPlanner<'drop_column'> = (body, planner) => {
  const { model } = planner;
  const table = model.table(body.table, 'table');
  const dropped = column(table, body.column, 'column');
  // An earlier operation of this migration may have shadowed it (drop_constraint, a type change): moot now.
  planner.unshadowColumn(table, dropped);
  dropModelColumn(table, dropped);
  if (table.primaryKey.includes(body.column)) {
    planner.warn(`column "${body.column}" is part of the primary key of "${table.name}"; dropping it at complete drops the primary key too`);
  }
  const ddlTable = { schema: model.schema, name: table.physical };

  if (table.created || !dropped.original) {
    // Nothing old reads it: drop it now.
    planner.start('expand', dropColumnStep(ddlTable, dropped.physical, `drop column ${table.name}.${body.column}`));
    return;
  }

  if (body.down) {
    planner.sync(table.physical, {
      description: `${table.name}.${body.column} for the old version, from down`,
      oldColumn: dropped.original,
      down: [planner.expression(body.down, newVersionNames(table), dropped.type, 'down')],
    });
  } else if (!dropped.nullable && dropped.default === null && dropped.identity === '' && dropped.generated === '') {
    planner.warn(
      `column "${body.column}" is NOT NULL without a default: until complete, inserts by the new version fail unless \`down\` gives it a value`,
    );
  }
  planner.complete('contract', dropColumnStep(ddlTable, dropped.original, `drop column ${table.physical}.${dropped.original}`, { destructive: true }));
};
