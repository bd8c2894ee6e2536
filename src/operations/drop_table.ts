import type { OperationPlanner } from './types.js';
import { sqlStep } from '../core/steps.js';
import { dropTableSql, lockTargetOf } from '../core/ddl.js';

/** Hidden from the new version at start; the old version keeps reading it until complete drops it. */
export const dropTable: OperationPlanner<'drop_table'> = (body, planner) => {
  const { model } = planner;
  const table = model.table(body.name, 'name');
  model.dropTable(body.name);
  const ddlTable = { schema: model.schema, name: table.physical };
  const sql = dropTableSql(ddlTable);
  if (table.created) {
    planner.start('expand', sqlStep(`drop table ${table.physical}`, sql));
    return;
  }
  planner.forgetTable(table);
  planner.complete('contract', sqlStep(`drop table ${table.physical}`, sql, { lockTarget: lockTargetOf(ddlTable), destructive: true }));
};
