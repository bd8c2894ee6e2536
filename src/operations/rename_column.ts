import type { OperationPlanner } from './types.js';
import { column, renameColumn as renameModelColumn, requireNewColumnName } from '../core/model.js';

/**
 * The new version sees the column under its new name at once (its view aliases the physical column);
 * the physical rename happens at complete, once no old client reads the old name.
 */
export const renameColumn: OperationPlanner<'rename_column'> = (body, planner) => {
  const table = planner.model.table(body.table, 'table');
  const renamed = column(table, body.from, 'from');
  if (body.from === body.to) return;
  requireNewColumnName(table, body.to, 'to');
  renameModelColumn(table, renamed, body.to);
};
