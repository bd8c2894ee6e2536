/**
 * Version schemas: one view per table showing the table as one version of the app sees it. The views
 * are simple (one table, plain column references), so PostgreSQL makes them updatable on its own,
 * INSERT … ON CONFLICT and RETURNING included.
 */
import type { ModelTable, SchemaModel } from './model.js';
import { qualified, quoteIdent, quoteLiteral } from './quote.js';

/** Who makes a version schema: recorded with it, so tandem only ever drops schemas it created. */
export interface VersionSchemaOwner {
  stateSchema: string;
  migration: string;
}

/** A version schema built partly from elsewhere: tables whose views come from `views` instead of the model. */
export interface BorrowedViews {
  /** Tables (by the model's name or physical name) left out of the model's views. */
  tables: ReadonlySet<string>;
  /** Statements that create the borrowed views in the version schema. */
  views: string[];
}

/**
 * Creates the version schema (never one that exists already: CREATE SCHEMA fails then) and records
 * in the state schema, in the same transaction, that tandem created it.
 */

export function createVersionSchemaSql(model: SchemaModel, versionSchema: string, owner: VersionSchemaOwner, borrowed?: BorrowedViews): string[] {
  const statements = [
    `CREATE SCHEMA ${quoteIdent(versionSchema)}`,
    `INSERT INTO ${qualified(owner.stateSchema, 'version_schemas')} (version_schema, schema_name, migration)
     VALUES (${quoteLiteral(versionSchema)}, ${quoteLiteral(model.schema)}, ${quoteLiteral(owner.migration)})
     ON CONFLICT (version_schema) DO UPDATE SET schema_name = EXCLUDED.schema_name, migration = EXCLUDED.migration, created_at = now()`,
  ];
  for (const grantee of model.usageGrantees) {
    statements.push(`GRANT USAGE ON SCHEMA ${quoteIdent(versionSchema)} TO ${roleName(grantee)}`);
  }
  for (const table of model.visibleTables()) {
    if (borrowed?.tables.has(table.name) || borrowed?.tables.has(table.physical)) continue;
    statements.push(...createViewSql(model, versionSchema, table));
  }
  if (borrowed) statements.push(...borrowed.views);
  return statements;
}

export function createViewSql(model: SchemaModel, versionSchema: string, table: ModelTable): string[] {
  const columns = table.columns.map((c) => (c.physical === c.name ? quoteIdent(c.name) : `${quoteIdent(c.physical)} AS ${quoteIdent(c.name)}`));
  // security_invoker (PostgreSQL 15+) checks the querying role's privileges and row security on the
  // table, as a direct query would; older servers check the view owner's.
  const options = model.atLeast(15) ? ' WITH (security_invoker = true)' : '';
  const view = qualified(versionSchema, table.name);
  const statements = [
    `CREATE OR REPLACE VIEW ${view}${options} AS SELECT ${columns.join(', ')} FROM ${qualified(model.schema, table.physical)}`,
  ];
  for (const grant of table.grants.filter((g) => VIEW_PRIVILEGES.has(g.privilege))) statements.push(`GRANT ${grant.privilege} ON ${view} TO ${roleName(grant.grantee)}`);
  return statements;
}

/** The privileges that mean something on a view; the rest (TRUNCATE, TRIGGER, …) stay on the table. */
const VIEW_PRIVILEGES = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE']);

/**
 * Drops a version schema, and only one that tandem created (its record in the state schema says so):
 * its views one by one, then the schema without CASCADE, so anything else someone put there (a
 * table, a function, a view of their own that depends on one of ours) stops the drop with an error
 * that names it instead of disappearing with the schema.
 */
export function dropVersionSchemaSql(stateSchema: string, versionSchema: string): string {
  const name = quoteLiteral(versionSchema);
  const registry = qualified(stateSchema, 'version_schemas');
  return `DO $tandem$
DECLARE
  _view text;
  _others text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ${name}) THEN
    DELETE FROM ${registry} WHERE version_schema = ${name};
    RETURN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM ${registry} WHERE version_schema = ${name}) THEN
    RAISE EXCEPTION 'schema % was not created by tandem: it is not dropped', ${quoteLiteral(quoteIdent(versionSchema))}
      USING ERRCODE = '42501', HINT = 'tandem drops only the version schemas it created itself';
  END IF;
  FOR _view IN SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ${name} AND c.relkind = 'v' ORDER BY c.relname LOOP
    EXECUTE pg_catalog.format('DROP VIEW %I.%I', ${name}, _view);
  END LOOP;
  SELECT pg_catalog.string_agg(what, ', ' ORDER BY what) INTO _others FROM (
    SELECT pg_catalog.format('%s %I', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'S' THEN 'sequence'
             WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' WHEN 'i' THEN 'index' WHEN 'c' THEN 'type' ELSE 'relation' END, c.relname) AS what
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${name}
    UNION ALL
    SELECT pg_catalog.format('function %I', p.proname) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ${name}
    UNION ALL
    SELECT pg_catalog.format('type %I', t.typname) FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = ${name} AND t.typrelid = 0 AND t.typelem = 0
  ) AS found;
  IF _others IS NOT NULL THEN
    RAISE EXCEPTION 'version schema % holds objects tandem did not put there: %', ${quoteLiteral(quoteIdent(versionSchema))}, _others
      USING ERRCODE = '2BP01', HINT = 'move them to another schema (ALTER … SET SCHEMA) or drop them, then run the command again';
  END IF;
  EXECUTE ${quoteLiteral(`DROP SCHEMA ${quoteIdent(versionSchema)}`)};
  DELETE FROM ${registry} WHERE version_schema = ${name};
END
$tandem$`;
}

function roleName(grantee: string): string {
  return grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(grantee);
}
