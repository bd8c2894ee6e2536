/**
 * A migration's plan: every statement `start`, `complete` and `rollback` will run, computed before
 * anything touches the database. It is stored with the migration, so an interrupted run resumes at
 * the exact step where it stopped, and `--dry-run` can print it.
 */
import type { VersionTable } from './model.js';
import type { SyncRule } from './triggers.js';

/** One or more SQL statements run as a unit under lock_timeout, retried with backoff on lock timeouts. */
export interface SqlStep {
  kind: 'sql';
  description: string;
  statements: string[];
  /**
   * False for statements that cannot run in a transaction (CREATE/DROP INDEX CONCURRENTLY). Such a
   * step must be safe to repeat, and `cleanup` runs before a retry to remove a half-built object.
   */
  transactional: boolean;
  cleanup?: string[];
  /** The table whose lock the step needs, physical and schema-qualified, for error messages. */
  lockTarget?: string;
  /**
   * Set on a step that changes the database's data or structure beyond repair (drops); the plan before
   * the first such step can still be rolled back.
   */
  destructive?: boolean;
  /** The operation that asked for this step, so a failure names it. */
  origin?: StepOrigin;
  /**
   * Raw SQL from the migration runs with the migrated schema first on its search_path (where its
   * unqualified CREATEs land); tandem's own statements run under the session's fixed one.
   */
  searchPath?: string;
  /** Start steps are numbered; a rollback step lists the start steps it undoes. */
  id?: number;
  undoes?: number[];
  /**
   * A complete or rollback step that leaves the sync function of `table` (physical name) to the
   * migrations still active after it: its first `statements` statements are made anew from them when
   * the phase begins (see engine/restack.ts), since the stack may have changed since the plan was made.
   */
  restacks?: { table: string; statements: number };
  /**
   * A complete step that gives a column, constraint or this table (physical name) its final name: it
   * waits for a migration stacked on the table, whose plan names them as they are now.
   */
  renameOn?: string;
  /** Set on such a rename when a migration stacked on the table (this id) makes it instead: complete skips it. */
  deferredTo?: number;
}

export interface StepOrigin {
  operation: number;
  kind: string;
  field?: string;
}

/** Rewrites existing rows in batches so the sync triggers fill new and shadow columns. */
export interface BackfillStep {
  kind: 'backfill';
  description: string;
  /** Physical table name. */
  table: string;
  /** A column this migration owns; `SET col = col` fires the triggers without changing the row. */
  touchColumn: string;
  /**
   * When set, the backfill computes the synced columns in its own UPDATE (`SET <this>`) with the
   * sync trigger held off, which is faster than running the trigger on each row.
   */
  assignments?: string;
  origin?: StepOrigin;
  id?: number;
}

/**
 * Creates the version schema from the live catalog when the step runs: used after raw SQL, whose
 * effect on the schema only the database knows.
 */
export interface LiveViewsStep {
  kind: 'live_views';
  description: string;
  versionSchema: string;
  origin?: StepOrigin;
  id?: number;
}

/**
 * Waits until every live proxy has written a heartbeat after this step began: each heartbeat follows
 * a re-read of the versions, so from then on the proxies refuse sessions of the retired version
 * instead of letting them run against the new shape. Until then the old columns are still in place.
 */
export interface AwaitProxiesStep {
  kind: 'await_proxies';
  description: string;
  versionSchema: string;
  origin?: StepOrigin;
  id?: number;
}

export type Step = SqlStep | BackfillStep | LiveViewsStep | AwaitProxiesStep;

export interface Plan {
  start: Step[];
  complete: Step[];
  rollback: Step[];
  /** The version schema `complete` retires (the one the old app uses), if any. */
  retires: string | null;
  /** false when start creates no version schema (pgroll's --use-version-schema=false); absent: it does. */
  createsVersionSchema?: false;
  /**
   * What the migration creates, checked after the last complete step (absent from plans stored
   * before tandem kept it: their complete checks nothing).
   */
  expect?: ExpectedObject[];
  /**
   * The tables the migration's operations name (by any name they give, old or new, and the tables
   * their foreign keys reference), so that a migration stacked on this one can be told whether it
   * touches them; null when raw SQL may touch anything. Absent from plans stored before stacking.
   */
  touches?: string[] | null;
  /** The tables (physical names) that got a sync trigger at start. Absent from plans stored before stacking. */
  syncTables?: string[];
  /**
   * The rules of those sync triggers, by table (physical name): a table's sync function is made anew
   * from every active migration's rules when one stacked on it starts, completes or rolls back.
   * Absent from plans stored before stacking on one table.
   */
  syncRules?: Record<string, SyncRule[]>;
  /**
   * The tables the migration touches as its version sees them, for a migration stacked on the same
   * tables to plan on (see model.ts, VersionTable). Absent from plans stored before stacking on one table.
   */
  versionTables?: VersionTable[];
  /** The names indexes built under temporary names take at complete: taken for a migration stacked on this one. */
  indexNames?: string[];
  /**
   * Indexes built on shadow columns under temporary names, and what each becomes at complete, for a
   * migration stacked on this one that shadows those columns again. Absent from plans stored before.
   */
  pendingIndexes?: PendingIndex[];
}

/** An index built under a temporary name that takes its final name, or becomes a constraint, at complete. */
export interface PendingIndex {
  /** The temporary name it is built under. */
  index: string;
  /** The name it takes at complete: its own, or that of the constraint it becomes. */
  name: string;
  /** When it becomes a constraint: which kind, and its DEFERRABLE clause. */
  constraint?: { kind: 'unique' | 'primary_key'; deferrable: string };
}

/** Whether the migration's start creates its version schema (plans stored before the choice existed do). */
export function createsVersionSchema(plan: Plan): boolean {
  return plan.createsVersionSchema !== false;
}

/** An object a migration creates, by the names it has once complete is done. */
export interface ExpectedObject {
  kind: 'table' | 'column' | 'constraint' | 'index';
  table: string;
  /** The column, constraint or index name (the table's own name for a table). */
  name: string;
  /** For an index: the columns it was asked for, to say why it may be missing. */
  columns?: string[];
  origin: StepOrigin;
}

export function sqlStep(description: string, statements: string | string[], options: Partial<Omit<SqlStep, 'kind' | 'description' | 'statements'>> = {}): SqlStep {
  return {
    kind: 'sql',
    description,
    statements: Array.isArray(statements) ? statements : [statements],
    transactional: options.transactional ?? true,
    ...(options.cleanup ? { cleanup: options.cleanup } : {}),
    ...(options.lockTarget ? { lockTarget: options.lockTarget } : {}),
    ...(options.destructive ? { destructive: true } : {}),
    ...(options.origin ? { origin: options.origin } : {}),
    ...(options.searchPath ? { searchPath: options.searchPath } : {}),
    ...(options.restacks ? { restacks: options.restacks } : {}),
    ...(options.renameOn ? { renameOn: options.renameOn } : {}),
  };
}

/** Phases of `start`, in execution order. */
export const START_PHASES = ['expand', 'sync', 'constrain', 'backfill', 'views'] as const;
export type StartPhase = (typeof START_PHASES)[number];

/**
 * Phases of `complete`, in execution order. Everything that can fail on data (validating constraints)
 * runs before anything is dropped, so a failed complete leaves a migration that can still be rolled back.
 * Until the two rename phases, steps name tables and columns by their physical names of the migration;
 * columns and constraints are renamed while their tables still have their old names, tables last.
 */
export const COMPLETE_PHASES = ['validate', 'retire', 'contract', 'finish', 'rename', 'rename_tables'] as const;
export type CompletePhase = (typeof COMPLETE_PHASES)[number];
