/**
 * Version schemas: one view per table showing the table as one version of the app sees it. The views
 * are simple (one table, plain column references), so PostgreSQL makes them updatable on its own,
 * INSERT … ON CONFLICT and RETURNING included.
 */
import type { ModelTable, SchemaModel } from './model.js';
import { qualified, quoteIdent } from './sql.js';

export function createVersionSchemaSql(model: SchemaModel, versionSchema: string): string[] {
  const statements = [`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(versionSchema)}`];
  for (const grantee of model.usageGrantees) {
    statements.push(`GRANT USAGE ON SCHEMA ${quoteIdent(versionSchema)} TO ${roleName(grantee)}`);
  }
  for (const table of model.visibleTables()) statements.push(...createViewSql(model, versionSchema, table));
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

export function dropVersionSchemaSql(versionSchema: string): string {
  return `DROP SCHEMA IF EXISTS ${quoteIdent(versionSchema)} CASCADE`;
}

function roleName(grantee: string): string {
  return grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(grantee);
}
