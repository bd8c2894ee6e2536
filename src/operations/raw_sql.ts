import type { OperationPlanner } from './types.js';
import { sqlStep } from '../core/steps.js';
import { quoteIdent } from '../core/quote.js';

/**
 * Raw SQL, run as written. tandem cannot know what it changes, so (as in pgroll) a start-time `sql`
 * operation must be the only operation of its migration, and the version schema is built from the
 * live schema after it ran. With `onComplete` it runs at complete instead.
 */
export const rawSql: OperationPlanner<'sql'> = (body, planner) => {
  // CREATE INDEX CONCURRENTLY and friends refuse to run inside a transaction block.
  const transactional = !/\bconcurrently\b/i.test(body.up);
  // As pgroll does: the migrated schema first, so unqualified names mean its objects (pg_catalog is
  // still searched before it, implicitly); pg_temp last, so no temporary object can stand in.
  const searchPath = `${quoteIdent(planner.model.schema)}, pg_temp`;
  if (body.onComplete) {
    planner.complete('finish', sqlStep('run sql (on complete)', body.up, { transactional, searchPath }));
    return;
  }
  planner.start('expand', sqlStep('run sql', body.up, { transactional, searchPath }));
  planner.viewsFromLiveSchema = true;
  if (body.down) planner.rollback(sqlStep('run sql down', body.down, { transactional: !/\bconcurrently\b/i.test(body.down), searchPath }));
};
