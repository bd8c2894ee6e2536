/**
 * Stacked migrations: starting a migration while others are active. Versions stay linear (each
 * active migration builds on the version before it; complete retires the oldest version first,
 * rollback undoes the newest migration first):
 * - its version schema shows the active migrations' tables that it leaves alone as the latest version
 *   does (their views are copied from the latest version schema), and the rest as its plan makes them;
 * - on a table an active migration touches too, it plans on that migration's version of the table
 *   (stored with its plan), and may not change what that migration has not finished changing (a
 *   column it changes, an object under a temporary name: see refuseUnfinished);
 * - a table's sync function holds every active migration's rules, one layer each, and is made anew
 *   when one of them starts, completes or rolls back; writers through a version that leaves the
 *   table alone write as the layer below them.
 */
import type pg from 'pg';
import { TandemError } from '../errors/index.js';
import type { StackRefusal } from '../errors/state.js';
import { whatWorksNow } from './next-command.js';
import type { Migration, Operation } from '../migration/format.js';
import type { SchemaInfo } from '../core/catalog-types.js';
import type { StackBase } from '../core/planner.js';
import { createsVersionSchema } from '../core/steps.js';
import { qualified } from '../core/quote.js';
import type { MigrationRecord } from '../state/migrations.js';

/** How many migrations may be active at once unless --max-active-migrations says otherwise. */
export const DEFAULT_MAX_ACTIVE_MIGRATIONS = 3;

/**
 * The tables a migration's operations name, by every name they give (a renamed table's old and new
 * name), the tables their foreign keys reference and the tables tied to those by foreign keys now;
 * null when it runs raw SQL, which may touch any. A dropped index counts for its table.
 */
export function tablesNamedBy(migration: Migration, schema: SchemaInfo): string[] | null {
  const named = new Set<string>();
  for (const operation of migration.operations) {
    if (operation.kind === 'sql') return null;
    for (const table of tablesOf(operation, schema)) named.add(table);
  }
  // Tables tied to them by a foreign key count too: a column swapped or dropped on one side changes
  // the constraint on the other (complete of one migration would break a key the other added).
  const byOid = new Map([...schema.tables.values()].map((t) => [t.oid, t.name]));
  for (const name of [...named]) {
    const table = schema.tables.get(name);
    if (!table) continue;
    for (const constraint of table.constraints) {
      if (constraint.type === 'foreign_key' && constraint.referencedTable && schema.tables.has(constraint.referencedTable)) named.add(constraint.referencedTable);
    }
    for (const inbound of table.inboundForeignKeys) {
      const referencing = byOid.get(inbound.tableOid);
      if (referencing) named.add(referencing);
    }
  }
  return [...named].sort();
}

function tablesOf(operation: Operation, schema: SchemaInfo): string[] {
  switch (operation.kind) {
    case 'create_table':
    case 'drop_table':
      return [operation.body.name, ...referencedTables(operation.body)];
    case 'rename_table':
      return [operation.body.from, operation.body.to];
    case 'drop_index': {
      const owner = [...schema.tables.values()].find((t) => t.indexes.some((i) => i.name === operation.body.name));
      // An index an active migration creates has a temporary name until its complete: not found
      // here, and planning refuses to drop it (index_unknown).
      return owner ? [owner.name] : [];
    }
    case 'sql':
      return [];
    default:
      return [operation.body.table, ...referencedTables(operation.body)];
  }
}

/** Tables named by `references` anywhere in an operation's body (columns, constraints). */
function referencedTables(body: unknown): string[] {
  const found: string[] = [];
  const visit = (value: unknown, key: string | undefined) => {
    if (Array.isArray(value)) value.forEach((item) => visit(item, undefined));
    else if (value && typeof value === 'object') {
      const record = value as Record<string, unknown>;
      if (key === 'references' && typeof record.table === 'string') found.push(record.table);
      for (const [k, v] of Object.entries(record)) visit(v, k);
    }
  };
  visit(body, undefined);
  return found;
}

/**
 * Checks that `migration` may be stacked on the in-flight migrations `active` (oldest first, none of
 * them `name` itself) and refuses with the reason otherwise: any of them in the middle of a run, more
 * than `maxActive`, raw SQL or no version schema on either side, or a table both name.
 */
export function refuseStacking(active: MigrationRecord[], migration: { name: string; touches: string[] | null; createsVersionSchema: boolean; complete: boolean }, maxActive: number, file?: string): void {
  const oldest = active[0]!;
  const busy = active.find((record) => record.status !== 'active');
  if (busy || maxActive <= 1) {
    const record = busy ?? oldest;
    throw new TandemError({ kind: 'migration_in_flight', name: record.name, status: record.status }, {
      file,
      hint: `${whatWorksNow(record.status, record.file)} before starting "${migration.name}"`,
    });
  }
  if (active.length >= maxActive) throw new TandemError({ kind: 'stack_full', active: active.map((r) => r.name), max: maxActive }, { file });
  if (migration.complete) throw stackRefused(oldest.name, 'complete', file);
  refuseOnTop(active, migration, file);
}

/** The checks of one migration against the active ones that do not depend on how many there are. */
function refuseOnTop(active: MigrationRecord[], migration: { touches: string[] | null; createsVersionSchema: boolean }, file?: string): asserts migration is { touches: string[]; createsVersionSchema: boolean } {
  const newest = active.at(-1)!.name;
  if (migration.touches === null) throw stackRefused(newest, 'raw_sql', file);
  if (!migration.createsVersionSchema) throw stackRefused(newest, 'no_version_schema', file);
  for (const record of active) {
    if (record.plan.touches === undefined || record.plan.syncTables === undefined) throw stackRefused(record.name, 'planned_before_stacking', file);
    if (record.plan.touches === null) throw stackRefused(record.name, 'active_raw_sql', file);
    if (!createsVersionSchema(record.plan)) throw stackRefused(record.name, 'active_no_version_schema', file);
    const shared = migration.touches.filter((table) => record.plan.touches!.includes(table));
    // A migration stacked on a table an active one touches plans on that one's version of it, and the
    // table's sync function is made anew from every active migration's rules.
    const keptVersions = record.plan.versionTables !== undefined && (record.plan.syncTables ?? []).every((t) => record.plan.syncRules?.[t]);
    if (shared.length && !keptVersions) throw new TandemError({ kind: 'stack_conflict', name: record.name, tables: shared }, { file });
  }
}

/**
 * `migrate --stack`: checks, before any is started, that the pending migrations can be stacked one on
 * the other on top of the active ones (`active`, none of them in the middle of a run): as many as
 * --max-active-migrations allows, and each keeping to other tables than the active ones and the
 * pending ones before it. Each start checks again against the schema as it is then.
 */
export function refuseStackingAll(active: MigrationRecord[], pending: { name: string; touches: string[] | null; file?: string }[], createsVersionSchema: boolean, maxActive: number): void {
  if (active.length + pending.length > maxActive) {
    throw new TandemError({ kind: 'stack_full', active: active.map((r) => r.name), max: maxActive, starting: pending.map((p) => p.name) });
  }
  for (const [i, migration] of pending.entries()) {
    if (active.length) refuseOnTop(active, { touches: migration.touches, createsVersionSchema }, migration.file);
    for (const before of pending.slice(0, i)) {
      const refused = (reason: StackRefusal) => new TandemError({ kind: 'stack_refused', name: before.name, reason, pending: true }, { file: migration.file });
      if (!createsVersionSchema) throw refused('no_version_schema');
      if (migration.touches === null) throw refused('raw_sql');
      if (before.touches === null) throw refused('active_raw_sql');
    }
  }
}

function stackRefused(name: string, reason: StackRefusal, file?: string): TandemError {
  return new TandemError({ kind: 'stack_refused', name, reason }, { file });
}

/**
 * What a migration stacked on `active` (checked by refuseStacking) builds on: the views of their
 * tables copied from the latest version schema into `versionSchema`, with their grants, and their
 * sync triggers with the version schemas that write through them as the new version now.
 */
export async function stackBase(db: pg.Client, active: MigrationRecord[], versionSchema: string, touches: string[]): Promise<StackBase> {
  const tables = [...new Set(active.flatMap((record) => record.plan.touches ?? []))].sort();
  // Shared by any of its names: a table an active migration renamed is named by the new name here,
  // and its old one must not be borrowed either.
  const named = new Set(tables.filter((table) => touches.includes(table)));
  for (const version of active.flatMap((record) => record.plan.versionTables ?? [])) {
    if (named.has(version.name) || named.has(version.physical)) named.add(version.name).add(version.physical);
  }
  const shared = [...named].sort();
  const latest = active.at(-1)!.versionSchema;
  const views = await copiedViews(db, latest, tables.filter((table) => !shared.includes(table)), versionSchema);
  const versions = active.flatMap((record) => (record.plan.versionTables ? [{ migration: record.name, touched: record.plan.touches ?? [], tables: record.plan.versionTables, indexNames: record.plan.indexNames ?? [], pendingIndexes: record.plan.pendingIndexes ?? [] }] : []));
  return { tables, views, triggers: syncLayers(active), versions, shared };
}

/**
 * Each table with sync rules of active migrations (oldest first): the version schemas that write it as
 * the newest migration with rules on it sees it (old-style, for its two triggers), and its layers when
 * every one of those migrations kept its rules: a layer's writers are its migration's version and
 * those of the migrations after it up to the next one with rules on the table.
 */
export function syncLayers(active: MigrationRecord[]): StackBase['triggers'] {
  const tables = [...new Set(active.flatMap((record) => record.plan.syncTables ?? []))];
  return tables.map((table) => {
    const positions = active.flatMap((record, i) => ((record.plan.syncTables ?? []).includes(table) ? [i] : []));
    const newVersionSchemas = active.slice(positions.at(-1)).map((r) => r.versionSchema);
    const rules = positions.map((i) => active[i]!.plan.syncRules?.[table]);
    if (rules.some((r) => !r)) return { table, newVersionSchemas };
    const layers = positions.map((i, m) => ({ versionSchemas: active.slice(i, positions[m + 1]).map((r) => r.versionSchema), rules: rules[m]! }));
    return { table, newVersionSchemas, layers };
  });
}

/**
 * CREATE VIEW statements that copy the views named `tables` of schema `from` into `to`, as the
 * server prints them with nothing on the search path (every table schema-qualified), with their
 * options and the privileges that mean something on a view.
 */
async function copiedViews(db: pg.Client, from: string, tables: string[], to: string): Promise<string[]> {
  await db.query('BEGIN');
  try {
    await db.query('SET LOCAL search_path = pg_catalog');
    const { rows } = await db.query<{ name: string; definition: string; options: string[] | null; grants: { privilege: string; grantee: string | null }[] }>(
      `SELECT c.relname AS name, pg_get_viewdef(c.oid) AS definition, c.reloptions AS options,
              COALESCE((SELECT json_agg(json_build_object('privilege', a.privilege_type, 'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE a.grantee::regrole::text END) ORDER BY a.grantee, a.privilege_type)
                          FROM aclexplode(c.relacl) AS a
                         WHERE a.grantee <> c.relowner AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')), '[]') AS grants
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind = 'v' AND c.relname = ANY ($2::text[])
        ORDER BY c.relname`,
      [from, tables],
    );
    await db.query('COMMIT');
    return rows.flatMap((row) => {
      const view = qualified(to, row.name);
      const options = row.options?.length ? ` WITH (${row.options.join(', ')})` : '';
      const grants = row.grants.map((g) => `GRANT ${g.privilege} ON ${view} TO ${g.grantee === null ? 'PUBLIC' : g.grantee}`);
      return [`CREATE VIEW ${view}${options} AS ${row.definition.trim().replace(/;$/, '')}`, ...grants];
    });
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
