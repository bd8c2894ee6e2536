/**
 * `tandem init --from-pgroll`: takes over a database that pgroll manages. pgroll's history
 * (`<pgroll schema>.migrations`) is copied into tandem's state as complete migrations, and the
 * version schemas pgroll created are recorded as tandem's, so clients keep them and tandem's next
 * complete retires them. pgroll's own schema is read, never changed.
 */
import { quoteIdent } from '../core/quote.js';
import type { Queryable } from '../db/connection.js';
import { TandemError } from '../errors/index.js';
import { digestOf } from '../migration/load.js';
import { versionSchemaName } from '../migration/names.js';
import { actor, MigrationStore } from '../state/migrations.js';
import { underMigrationLock } from '../state/migration-lock.js';
import { initStateSchema } from '../state/schema.js';

/** pgroll's event triggers, which record DDL run outside pgroll as "inferred" migrations. */
export const PGROLL_EVENT_TRIGGERS = ['pg_roll_handle_ddl', 'pg_roll_handle_drop'] as const;

/** One row of pgroll's migrations table, as its init.sql defines it (migration_type came later). */
export interface PgrollMigration {
  name: string;
  parent: string | null;
  done: boolean;
  migration: { version_schema?: string; operations?: unknown[] } & Record<string, unknown>;
  migrationType: 'pgroll' | 'inferred' | 'baseline';
  createdAt: Date;
  updatedAt: Date;
}

export interface PgrollImport {
  /** Migrations copied into tandem's history, oldest first (those already there are not counted). */
  imported: PgrollMigration[];
  /** pgroll's whole history of the schema, oldest first. */
  history: PgrollMigration[];
  /** Version schemas pgroll created that exist now, adopted as tandem's. */
  versionSchemas: string[];
  /** pgroll's event triggers that exist and are enabled. */
  eventTriggers: string[];
}

/** The version schema pgroll gave a migration (tandem names them the same way). */
export function pgrollVersionSchema(schema: string, migration: PgrollMigration): string {
  const versionSchema = typeof migration.migration.version_schema === 'string' && migration.migration.version_schema ? migration.migration.version_schema : undefined;
  return versionSchemaName({ name: migration.name, versionSchema }, schema);
}

/** pgroll's history of `schema`, oldest first, following each migration's parent. */
export async function readPgrollHistory(db: Queryable, pgrollSchema: string, schema: string): Promise<PgrollMigration[]> {
  const { rows: exists } = await db.query<{ ok: boolean }>(`SELECT to_regclass(format('%I.migrations', $1::text)) IS NOT NULL AS ok`, [pgrollSchema]);
  if (!exists[0]?.ok) throw new TandemError({ kind: 'pgroll_state_missing', pgrollSchema });
  // to_jsonb of the whole row: pgroll releases before migration_type lack the column.
  const { rows } = await db.query<{ row: Record<string, unknown>; created_at: Date; updated_at: Date }>(
    `SELECT to_jsonb(m) AS row, m.created_at::timestamptz AS created_at, m.updated_at::timestamptz AS updated_at
       FROM ${quoteIdent(pgrollSchema)}.migrations m WHERE m.schema = $1`,
    [schema],
  );
  const byParent = new Map<string | null, PgrollMigration>();
  for (const { row, created_at, updated_at } of rows) {
    const migration: PgrollMigration = {
      name: String(row.name),
      parent: typeof row.parent === 'string' ? row.parent : null,
      done: row.done === true,
      migration: (row.migration ?? {}) as PgrollMigration['migration'],
      migrationType: (row.migration_type ?? 'pgroll') as PgrollMigration['migrationType'],
      createdAt: created_at,
      updatedAt: updated_at,
    };
    byParent.set(migration.parent, migration);
  }
  const history: PgrollMigration[] = [];
  for (let next = byParent.get(null); next; next = byParent.get(next.name)) history.push(next);
  if (history.length !== rows.length) {
    const stray = [...byParent.values()].find((m) => !history.includes(m))!;
    throw new TandemError({ kind: 'pgroll_history_broken', name: stray.name, parent: stray.parent });
  }
  return history;
}

/** pgroll's event triggers that fire now (an event trigger disabled with ALTER EVENT TRIGGER does not). */
export async function pgrollEventTriggers(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ evtname: string }>(
    `SELECT evtname FROM pg_catalog.pg_event_trigger WHERE evtname = ANY($1::text[]) AND evtenabled <> 'D' ORDER BY evtname`,
    [PGROLL_EVENT_TRIGGERS],
  );
  return rows.map((r) => r.evtname);
}

/**
 * Copies pgroll's history of `schema` into tandem's state. Refused while pgroll has a migration
 * in progress (tandem cannot finish what pgroll started), and when tandem already has a history of
 * its own here; run again after pgroll applied more, it copies only the new migrations.
 */
export async function importPgrollHistory(db: Queryable, options: { pgrollSchema: string; stateSchema: string; schema: string }): Promise<PgrollImport> {
  const { pgrollSchema, stateSchema, schema } = options;
  const history = await readPgrollHistory(db, pgrollSchema, schema);
  const active = history.find((m) => !m.done);
  if (active) throw new TandemError({ kind: 'pgroll_migration_active', name: active.name, schema });
  await initStateSchema(db, stateSchema);
  const imported = await underMigrationLock(db, stateSchema, schema, async () => {
    const store = new MigrationStore(db, stateSchema, schema);
    const applied = await store.applied();
    const alreadyImported = applied.every((record, i) => record.pgrollType && record.name === history[i]?.name);
    if (!alreadyImported) throw new TandemError({ kind: 'pgroll_import_conflict', stateSchema, schema, applied: applied.length });
    const missing = history.slice(applied.length);
    const by = `pgroll (imported by tandem, ${actor()})`;
    for (const migration of missing) {
      await store.insertApplied({
        name: migration.name,
        versionSchema: pgrollVersionSchema(schema, migration),
        parent: migration.parent,
        digest: digestOf(migration.migration),
        migration: migration.migration,
        pgrollType: migration.migrationType,
        createdAt: migration.createdAt,
        updatedAt: migration.updatedAt,
        by,
      });
    }
    return { missing, versionSchemas: await adoptVersionSchemas(db, stateSchema, schema, history) };
  });
  return { imported: imported.missing, history, versionSchemas: imported.versionSchemas, eventTriggers: await pgrollEventTriggers(db) };
}

/** Records the version schemas of pgroll's migrations that exist, so tandem may drop them when it retires them. */
async function adoptVersionSchemas(db: Queryable, stateSchema: string, schema: string, history: PgrollMigration[]): Promise<string[]> {
  const names = history.map((m) => ({ versionSchema: pgrollVersionSchema(schema, m), migration: m.name }));
  const { rows } = await db.query<{ version_schema: string }>(
    `INSERT INTO ${quoteIdent(stateSchema)}.version_schemas (version_schema, schema_name, migration)
       SELECT v.version_schema, $1, v.migration
         FROM unnest($2::text[], $3::text[]) AS v (version_schema, migration)
         JOIN pg_catalog.pg_namespace n ON n.nspname = v.version_schema
       ON CONFLICT (version_schema) DO NOTHING
       RETURNING version_schema`,
    [schema, names.map((n) => n.versionSchema), names.map((n) => n.migration)],
  );
  return rows.map((r) => r.version_schema);
}
