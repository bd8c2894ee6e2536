/**
 * The sync triggers as tandem made them before one trigger took every writer (see triggers.ts), for
 * databases whose active migration an older tandem started. Its function is told the writer's side by
 * the trigger that calls it: `_tandem_sync` ('old') for anyone who is not the new version,
 * `_tandem_sync_new` ('new') for a session whose search_path starts with a new version schema, each
 * with an exclusive WHEN. Such a function stays until its migration completes or rolls back, or a
 * stacked migration makes the table's function anew; until then, giving its triggers other version
 * schemas must keep this shape, word for word what that tandem made.
 */
import { qualified, quoteIdent, quoteLiteral } from './quote.js';

/** The older tandem's trigger for writes whose session has a new version schema first. */
export const LEGACY_SYNC_TRIGGER_NEW_NAME = '_tandem_sync_new';

interface LegacyTarget {
  schema: string;
  table: string;
  functionSchema: string;
  functionName: string;
  triggerName: string;
}

/** The two triggers of an older tandem's sync function, with `newVersionSchemas` as the new version's writers. */
export function legacySyncTriggersSql(target: LegacyTarget, newVersionSchemas: string[]): string[] {
  const notNew = newVersionSchemas.length === 1 ? `${FIRST_SCHEMA} IS DISTINCT FROM ${quoteLiteral(newVersionSchemas[0]!)}::name` : `NOT ${isOneOf(newVersionSchemas)}`;
  const isNew = newVersionSchemas.length === 1 ? `${FIRST_SCHEMA} IS NOT DISTINCT FROM ${quoteLiteral(newVersionSchemas[0]!)}::name` : isOneOf(newVersionSchemas);
  return [createTriggerSql(target, target.triggerName, notNew, 'old'), createTriggerSql(target, LEGACY_SYNC_TRIGGER_NEW_NAME, isNew, 'new')];
}

const FIRST_SCHEMA = '(pg_catalog.current_schemas(false))[1]';

function isOneOf(schemas: string[]): string {
  return `COALESCE(${FIRST_SCHEMA} = ANY (ARRAY[${schemas.map(quoteLiteral).join(', ')}]::name[]), false)`;
}

function createTriggerSql(target: LegacyTarget, name: string, writer: string, side: string): string {
  const notBackfill = `pg_catalog.current_setting('tandem.backfill', true) IS DISTINCT FROM 'on'`;
  return `CREATE OR REPLACE TRIGGER ${quoteIdent(name)}
  BEFORE INSERT OR UPDATE ON ${qualified(target.schema, target.table)}
  FOR EACH ROW WHEN (${notBackfill} AND ${writer})
  EXECUTE FUNCTION ${qualified(target.functionSchema, target.functionName)}(${quoteLiteral(side)})`;
}
