import type { OperationPlanner } from './types.js';
import { TandemError } from '../errors/index.js';

/** Like rename_column, for a table: the new version's view has the new name; complete renames the table. */
export const renameTable: OperationPlanner<'rename_table'> = (body, planner) => {
  const { model } = planner;
  const table = model.table(body.from, 'from');
  if (body.from === body.to) return;
  if (model.findTable(body.to) || (model.relationNameTaken(body.to) && body.to !== table.physical)) {
    throw new TandemError({ kind: 'table_exists', schema: model.schema, name: body.to }, { field: 'to' });
  }
  model.renameTable(body.from, body.to);
};
