/**
 * What refuses or stops a migration's lifecycle (start, complete, rollback) given where the stored
 * state says it stands.
 */
export type Phase = 'start' | 'complete' | 'rollback';

/** A step of a plan, as errors name it: one-based position, of how many, and its description. */
export interface StepAt {
  index: number;
  total: number;
  description: string;
}

export type StateFact =
  | { kind: 'migration_in_flight'; name: string; status: string }
  | { kind: 'migration_already_started'; name: string; status: string }
  | { kind: 'migration_changed'; name: string }
  /**
   * Stacking refused: as many migrations are active as --max-active-migrations allows; `starting`:
   * the migrations `migrate --stack` would start on top of them.
   */
  | { kind: 'stack_full'; active: string[]; max: number; starting?: string[] }
  /**
   * Stacking refused: the new migration names tables an active one changes, and that one was started
   * by a tandem that did not keep its version of them (see Plan.versionTables).
   */
  | { kind: 'stack_conflict'; name: string; tables: string[] }
  /**
   * Stacking refused for a reason of the migrations themselves (see StackRefusal); `pending`: `name`
   * is not active yet but before it in the folder `migrate --stack` applies.
   */
  | { kind: 'stack_refused'; name: string; reason: StackRefusal; pending?: boolean }
  /** A stacked migration would change again what active migration `name` has not finished changing. */
  | { kind: 'stack_unfinished'; name: string; table: string; object: string; objectKind: 'column' | 'constraint' }
  | { kind: 'migration_applied'; name: string }
  /** `current`: the in-flight migration, when there is one that is not being started. */
  | { kind: 'nothing_to_resume'; current?: { name: string; status: string } }
  /** `fresh`: tandem's state does not exist yet on this database. */
  | { kind: 'nothing_active'; schema: string; fresh?: boolean }
  | { kind: 'no_versions'; schema: string }
  | { kind: 'start_unfinished'; name: string; step: number }
  | { kind: 'rollback_unfinished'; name: string }
  | { kind: 'complete_partly_done'; name: string; step: string }
  | { kind: 'complete_check_failed'; name: string; missing: string[] }
  /** `waited`: the run waited for the clients to leave (--wait-for-drain) and they did not. */
  | { kind: 'version_in_use'; versionSchema: string; clients: number | null; details: string[]; waited: boolean }
  | { kind: 'version_schema_too_long'; versionSchema: string }
  | { kind: 'version_schema_taken'; versionSchema: string; conflict: VersionSchemaConflict; fromFile: boolean }
  | { kind: 'schema_unknown'; schema: string }
  | { kind: 'busy'; schema: string; holder?: LockHolderSession }
  | { kind: 'state_changed'; name: string }
  /** Its code is `<phase>_failed`. Without `step`, the failure came from outside the plan's steps. */
  | { kind: 'phase_failed'; phase: Phase; name: string; step?: StepAt; reason: string }
  /** `reconnectSeconds`: how long reconnecting was tried, when it was. */
  | { kind: 'connection_lost'; phase: Phase; name: string; file?: string; step?: StepAt; reconnectSeconds?: number; reason: string };

/**
 * Why a migration cannot be stacked on the active ones: raw SQL (its own, or the active migration
 * `name`'s) may touch any table; a migration without a version schema leaves no view to build on; an
 * active migration planned by a tandem from before stacking did not record what it touches; and
 * `start --complete` would complete it before the older active ones.
 */
export type StackRefusal = 'raw_sql' | 'active_raw_sql' | 'no_version_schema' | 'active_no_version_schema' | 'planned_before_stacking' | 'complete';

export type VersionSchemaConflict =
  | { with: 'migrated_schema' }
  | { with: 'state_schema' }
  | { with: 'system_schema' }
  | { with: 'live_version'; migration: string }
  | { with: 'existing_schema'; owner: string };

/** The session holding a schema's migration lock. */
export interface LockHolderSession {
  pid: number;
  who: string;
  state: string | null;
  since: string | null;
  query: string | null;
}
