import type { Queryable } from '../db/connection.js';
import { quoteIdent, quoteLiteral } from '../core/quote.js';

/** Bumped whenever the DDL below changes shape; `init` upgrades older state schemas in place. */
export const STATE_VERSION = 4;

/** Channel on which every change to migration state is announced, so proxies refresh their version cache. */
export const VERSIONS_CHANNEL = 'tandem_versions';

/**
 * Statuses a migration passes through. Several migrations of a schema may be active at once (stacked,
 * see engine/stack.ts), but only one at a time is being started, completed or rolled back.
 */
export const MIGRATION_STATUSES = ['starting', 'active', 'completing', 'complete', 'rolling_back', 'rolled_back'] as const;
export type MigrationStatus = (typeof MIGRATION_STATUSES)[number];
export const IN_FLIGHT_STATUSES: readonly MigrationStatus[] = ['starting', 'active', 'completing', 'rolling_back'];
/** The in-flight statuses of a migration a tandem run is in the middle of. */
export const TRANSITION_STATUSES: readonly MigrationStatus[] = ['starting', 'completing', 'rolling_back'];

/**
 * A table's backfill: running, throttled (paused on purpose: a replica behind, load, lock waiters,
 * an operator), stalled (no batch for a while, against its will), done, or abandoned with its migration.
 */
export const BACKFILL_STATUSES = ['running', 'throttled', 'stalled', 'done', 'rolled_back'] as const;

/** Why a backfill is throttled now and since when, how long it was throttled before, the last replica lag it measured. */
const THROTTLE_COLUMNS = [
  'throttle_reason text',
  'throttle_detail text',
  'throttled_since timestamptz',
  'throttled_seconds double precision NOT NULL DEFAULT 0',
  'replica_lag_seconds double precision',
];

/**
 * The state schema's DDL. Every statement is idempotent, so `tandem init` can run any number of
 * times (and concurrently: it runs under a transaction-level advisory lock).
 */
export function stateSchemaDDL(stateSchema: string): string[] {
  const s = quoteIdent(stateSchema);
  const inTransition = TRANSITION_STATUSES.map(quoteLiteral).join(', ');
  return [
    `CREATE SCHEMA IF NOT EXISTS ${s}`,
    `CREATE TABLE IF NOT EXISTS ${s}.meta (
       key text PRIMARY KEY,
       value text NOT NULL
     )`,
    // One row per attempt to apply a migration. A rolled-back attempt stays as history; the
    // partial unique indexes below keep one migration per schema in transition (being started,
    // completed or rolled back) and one live row per name.
    `CREATE TABLE IF NOT EXISTS ${s}.migrations (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       schema_name text NOT NULL,
       name text NOT NULL,
       version_schema text NOT NULL,
       parent text,
       digest text NOT NULL,
       migration jsonb NOT NULL,
       file text,
       status text NOT NULL CHECK (status IN (${MIGRATION_STATUSES.map(quoteLiteral).join(', ')})),
       plan jsonb NOT NULL DEFAULT '{}',
       step integer NOT NULL DEFAULT 0,
       started_at timestamptz NOT NULL DEFAULT now(),
       started_by text NOT NULL,
       start_finished_at timestamptz,
       completed_at timestamptz,
       completed_by text,
       rolled_back_at timestamptz,
       rolled_back_by text,
       updated_at timestamptz NOT NULL DEFAULT now(),
       error text,
       pgroll_type text
     )`,
    `CREATE UNIQUE INDEX IF NOT EXISTS migrations_one_in_transition
       ON ${s}.migrations (schema_name) WHERE status IN (${inTransition})`,
    `CREATE UNIQUE INDEX IF NOT EXISTS migrations_live_name
       ON ${s}.migrations (schema_name, name) WHERE status <> 'rolled_back'`,
    // Version schemas that exist and serve clients: the newest live one is "latest".
    `CREATE OR REPLACE VIEW ${s}.versions AS
       SELECT m.schema_name,
              m.name AS migration,
              m.version_schema,
              m.status,
              m.started_at,
              m.completed_at,
              m.id,
              row_number() OVER (PARTITION BY m.schema_name ORDER BY m.id DESC) AS age
         FROM ${s}.migrations m
         JOIN pg_catalog.pg_namespace n ON n.nspname = m.version_schema
        WHERE m.status IN ('active', 'completing', 'complete', 'rolling_back')`,
    // Progress of each table's backfill, updated in the same transaction as each batch, so that a
    // killed process resumes exactly where the last committed batch ended.
    `CREATE TABLE IF NOT EXISTS ${s}.backfills (
       migration_id bigint NOT NULL REFERENCES ${s}.migrations (id) ON DELETE CASCADE,
       table_name text NOT NULL,
       method text NOT NULL,
       key_columns text[] NOT NULL DEFAULT '{}',
       cursor jsonb,
       upper_bound jsonb,
       pending jsonb NOT NULL DEFAULT '[]',
       rows_done bigint NOT NULL DEFAULT 0,
       rows_total bigint,
       batches bigint NOT NULL DEFAULT 0,
       retries bigint NOT NULL DEFAULT 0,
       rate double precision,
       status text NOT NULL DEFAULT 'running' CONSTRAINT backfills_status_check CHECK (status IN (${BACKFILL_STATUSES.map(quoteLiteral).join(', ')})),
       started_at timestamptz NOT NULL DEFAULT now(),
       last_progress_at timestamptz NOT NULL DEFAULT now(),
       finished_at timestamptz,
       ${THROTTLE_COLUMNS.join(',\n       ')},
       PRIMARY KEY (migration_id, table_name)
     )`,
    // \`tandem backfill --pause\` from any machine: the running backfill reads this before each batch.
    `CREATE TABLE IF NOT EXISTS ${s}.backfill_pauses (
       schema_name text PRIMARY KEY,
       paused_by text NOT NULL,
       paused_at timestamptz NOT NULL DEFAULT now()
     )`,
    // The version schemas tandem created, recorded in the transaction that creates each one: tandem
    // drops a schema only when it is here, so no migration can make it drop a schema of the user's.
    `CREATE TABLE IF NOT EXISTS ${s}.version_schemas (
       version_schema text PRIMARY KEY,
       schema_name text NOT NULL,
       migration text NOT NULL,
       created_at timestamptz NOT NULL DEFAULT now()
     )`,
    // One row per running proxy, rewritten every few seconds. `versions` maps a version schema to
    // {"clients": n, "last_query_at": iso-time or null}. Rows whose heartbeat is old are dead proxies.
    `CREATE TABLE IF NOT EXISTS ${s}.proxies (
       proxy_id text PRIMARY KEY,
       hostname text NOT NULL,
       pid integer NOT NULL,
       listen text NOT NULL,
       schema_name text NOT NULL,
       started_at timestamptz NOT NULL,
       heartbeat_at timestamptz NOT NULL,
       versions jsonb NOT NULL DEFAULT '{}'
     )`,
    `CREATE OR REPLACE FUNCTION ${s}.announce_change() RETURNS trigger
       LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
       BEGIN
         PERFORM pg_catalog.pg_notify(${quoteLiteral(VERSIONS_CHANNEL)}, TG_TABLE_SCHEMA || '.' || NEW.schema_name);
         RETURN NULL;
       END
     $fn$`,
    `CREATE OR REPLACE TRIGGER announce_change
       AFTER INSERT OR UPDATE OF status ON ${s}.migrations
       FOR EACH ROW EXECUTE FUNCTION ${s}.announce_change()`,
    `INSERT INTO ${s}.meta (key, value) VALUES ('state_version', '${STATE_VERSION}')
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
  ];
}

/** What a state schema written by an older tandem needs, by the version it was at. */
function upgradeDDL(stateSchema: string, from: number): string[] {
  const s = quoteIdent(stateSchema);
  const statements: string[] = [];
  // Before stacked migrations, one in-flight migration per schema (active ones included).
  if (from < 4) statements.push(`DROP INDEX IF EXISTS ${s}.migrations_one_in_flight`);
  if (from < 3) {
    statements.push(
      `ALTER TABLE ${s}.backfills DROP CONSTRAINT IF EXISTS backfills_status_check,
         ADD CONSTRAINT backfills_status_check CHECK (status IN (${BACKFILL_STATUSES.map(quoteLiteral).join(', ')})),
         ${THROTTLE_COLUMNS.map((column) => `ADD COLUMN IF NOT EXISTS ${column}`).join(',\n         ')}`,
      // Rows imported from pgroll's history by tandem init --from-pgroll carry pgroll's
      // migration_type (pgroll, inferred, baseline), and tandem baseline writes "baseline" as pgroll
      // does; the migrations tandem runs have none.
      `ALTER TABLE ${s}.migrations ADD COLUMN IF NOT EXISTS pgroll_type text`,
    );
  }
  if (from < 2) {
    statements.push(
      // Version schemas made before tandem recorded them: those of migrations that are still live.
      `INSERT INTO ${s}.version_schemas (version_schema, schema_name, migration)
         SELECT m.version_schema, m.schema_name, m.name FROM ${s}.migrations m
           JOIN pg_catalog.pg_namespace n ON n.nspname = m.version_schema
          WHERE m.status IN ('active', 'completing', 'complete', 'rolling_back')
         ON CONFLICT (version_schema) DO NOTHING`,
    );
  }
  return statements;
}

/**
 * On a database taken over from pgroll, pgroll's event triggers record every DDL statement run
 * outside pgroll as an "inferred" migration in pgroll's history, unless the session sets this, as
 * pgroll's own sessions do. A server without pgroll takes it as a custom setting nobody reads.
 */
export const KEEP_OUT_OF_PGROLL_HISTORY = `SET pgroll.no_inferred_migrations = 'TRUE'`;

/** A fixed advisory-lock class so tandem's locks never collide with an application's. */
export const ADVISORY_LOCK_CLASS = 0x74616e64; // "tand"

/** Creates or upgrades the state schema. Safe to run concurrently and repeatedly. */
export async function initStateSchema(db: Queryable, stateSchema: string): Promise<void> {
  // Every start runs this: the statements go as a few messages, not one round trip each. After an
  // error the rest of a message is skipped, its COMMIT too, and the catch rolls back.
  try {
    await db.query(['BEGIN', `SELECT pg_advisory_xact_lock(${ADVISORY_LOCK_CLASS}, 0)`, KEEP_OUT_OF_PGROLL_HISTORY].join(';\n'));
    const before = await storedStateVersion(db, stateSchema);
    const upgrade = before === undefined ? [] : upgradeDDL(stateSchema, before);
    await db.query([...stateSchemaDDL(stateSchema), ...upgrade, 'COMMIT'].join(';\n'));
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** The state_version an existing state schema was written at; undefined when there is none yet. */
async function storedStateVersion(db: Queryable, stateSchema: string): Promise<number | undefined> {
  const { rows } = await db.query<{ exists: boolean }>(`SELECT to_regclass(format('%I.meta', $1::text)) IS NOT NULL AS exists`, [stateSchema]);
  if (!rows[0]?.exists) return undefined;
  const stored = await db.query<{ value: string }>(`SELECT value FROM ${quoteIdent(stateSchema)}.meta WHERE key = 'state_version'`);
  return stored.rows[0] ? Number(stored.rows[0].value) : 1;
}

/** True when the state schema exists and has the migrations table. */
export async function stateSchemaExists(db: Queryable, stateSchema: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(
    `SELECT to_regclass(format('%I.migrations', $1::text)) IS NOT NULL AS ok`,
    [stateSchema],
  );
  return rows[0]?.ok ?? false;
}
