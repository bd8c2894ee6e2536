import type { OperationPlanner } from './types.js';
import { dropIndexConcurrently } from '../core/ddl.js';
import { TandemError } from '../errors/index.js';

/** The old version may still depend on the index for speed, so it is dropped (concurrently) at complete. */
export const dropIndex: OperationPlanner<'drop_index'> = (body, planner) => {
  const { model } = planner;
  if (!model.indexNames.has(body.name)) {
    throw new TandemError({ kind: 'index_unknown', schema: model.schema, index: body.name }, { field: 'name' });
  }
  for (const table of model.visibleTables()) {
    const index = table.info?.indexes.find((i) => i.name === body.name);
    if (index?.constraint) {
      throw new TandemError({ kind: 'index_is_constraint', index: body.name, constraint: index.constraint, table: table.name }, { field: 'name' });
    }
  }
  model.dropIndex(body.name);
  planner.complete('contract', dropIndexConcurrently(model.schema, body.name, `drop index ${body.name} concurrently`, { destructive: true }));
};
