import type { OperationPlanner } from './types.js';
import { sqlStep } from '../core/steps.js';
import { qualified } from '../core/quote.js';

/** Hidden from the new version at start; the old version keeps reading it until complete drops it. */
export const dropTable: OperationPlanner<'drop_table'> = (body, planner) => {
  const { model } = planner;
  const table = model.table(body.name, 'name');
  model.dropTable(body.name);
  const sql = `DROP TABLE IF EXISTS ${qualified(model.schema, table.physical)}`;
  if (table.created) {
    planner.start('expand', sqlStep(`drop table ${table.physical}`, sql));
    return;
  }
  planner.forgetTable(table);
  planner.complete('contract', sqlStep(`drop table ${table.physical}`, sql, { lockTarget: `${model.schema}.${table.physical}`, destructive: true }));
};
