import type { OperationPlanner } from './types.js';
import { sqlStep } from '../core/steps.js';
import { qualified } from '../core/quote.js';
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
  model.indexNames.delete(body.name);
  planner.complete(
    'contract',
    sqlStep(`drop index ${body.name} concurrently`, `DROP INDEX CONCURRENTLY IF EXISTS ${qualified(model.schema, body.name)}`, { transactional: false, destructive: true }),
  );
};
