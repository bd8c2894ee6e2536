import type { Queryable } from '../db/connection.js';
import { readSchema } from '../catalog/read.js';
import { formatError, isDatabaseError, TandemError } from '../errors/index.js';
import type { Migration } from '../migration/format.js';
import { OPERATIONS } from '../operations/index.js';
import { databaseInspector } from './inspect.js';
import { tablesNamedBy } from './stack.js';
import { SchemaModel } from '../core/model.js';
import type { Plan } from '../core/steps.js';
import { withRehearsal } from '../core/rehearsal.js';
import { Planner, type Inspector, type MigrationContext, type Probe } from '../core/planner.js';
import type { SchemaInfo } from '../core/catalog-types.js';

export interface PlannedMigration {
  plan: Plan;
  warnings: string[];
}

/**
 * What an `up`/`down` expression the server cannot plan means. pgroll does not look at them until
 * a trigger first runs one, so files it applied may hold expressions that never could run:
 * - `refuse`: an error, the default: a version that writes a row would hit it;
 * - `warn_down`: `start --complete` retires the old version at once, so no client ever writes
 *   through a `down` expression and only `up` (which the backfill runs) must work;
 * - `warn`: `--skip-validation`, the user's word that the expressions are right.
 */
export type ExpressionCheck = 'refuse' | 'warn_down' | 'warn';

export function expressionCheckFor(options: { complete?: boolean; skipValidation?: boolean }): ExpressionCheck {
  return options.skipValidation ? 'warn' : options.complete ? 'warn_down' : 'refuse';
}

/**
 * Validates a migration against the live schema and plans it, without changing anything: every
 * operation is checked in order against the schema as the operations before it leave it, and every
 * `up`/`down` expression is planned by the server. Errors name the file, operation, kind and field.
 */
export async function planMigration(
  db: Queryable,
  migration: Migration,
  context: MigrationContext,
  file?: string,
  expressions: ExpressionCheck = 'refuse',
  /** The catalog snapshot, when the caller has just read it. */
  schema?: SchemaInfo,
): Promise<PlannedMigration> {
  const { plan, warnings, probes } = await planOperations(schema ?? (await readSchema(db, context.schema)), migration, context, databaseInspector(db), file);
  for (const probe of probes) {
    try {
      await db.query(probe.sql);
    } catch (error) {
      const failure = new TandemError({ kind: 'expression_invalid', reason: (error as Error).message }, {
        file,
        operation: probe.origin.operation,
        kind: probe.origin.kind,
        field: probe.origin.field,
        cause: error,
      });
      const neverRuns = expressions === 'warn' || (expressions === 'warn_down' && /^down\b/.test(probe.origin.field ?? ''));
      if (!neverRuns) throw failure;
      warnings.push(formatError(failure));
    }
  }
  return { plan, warnings };
}

/**
 * The plan of a migration over a catalog snapshot, with the server's answers coming from `inspector`:
 * no connection, so the plan tests give a snapshot literal and an in-memory inspector. The probes
 * are the queries `planMigration` has the server plan before the plan may run.
 */
export async function planOperations(
  schema: SchemaInfo,
  migration: Migration,
  context: MigrationContext,
  inspector: Inspector,
  file?: string,
): Promise<PlannedMigration & { probes: Probe[] }> {
  const model = new SchemaModel(schema);
  if (context.stackedOn) model.stackOn(context.stackedOn.versions, schema, context.stackedOn.shared);
  const planner = new Planner(model, context, inspector);
  const operations = migration.operations;
  for (const [index, operation] of operations.entries()) {
    const location = { file, operation: index, kind: operation.kind };
    if (operation.kind === 'sql' && !operation.body.onComplete && operations.length > 1) {
      throw new TandemError({ kind: 'sql_not_isolated' }, location);
    }
    const plan = OPERATIONS[operation.kind] as (body: unknown, planner: Planner) => void | Promise<void>;
    planner.beginOperation(index, operation.kind);
    try {
      await plan(operation.body, planner);
    } catch (error) {
      throw error instanceof TandemError ? error.at(location) : planningFailure(error, location);
    }
  }
  let built: Plan;
  try {
    built = planner.build();
  } catch (error) {
    throw error instanceof TandemError ? error.at({ file }) : error;
  }
  const plan = withRehearsal(built);
  plan.expect = planner.expected();
  plan.touches = tablesNamedBy(migration, schema);
  if (plan.touches) plan.versionTables = model.versionTables(plan.touches);
  return { plan, warnings: planner.warnings, probes: planner.probes };
}

/**
 * Anything but a TandemError out of an operation's planner is either the server refusing a question
 * planning asked it, or a defect of tandem's own: either way the user learns which operation of which
 * file it was planning, and nothing was changed.
 */
function planningFailure(error: unknown, location: { file?: string; operation: number; kind: string }): TandemError {
  const reason = formatError(error);
  return new TandemError(isDatabaseError(error) ? { kind: 'planning_database_error', reason } : { kind: 'planning_internal_error', reason }, { ...location, cause: error });
}
