/**
 * Backfill progress in `<state>.backfills`: one row per table a migration backfills, with how the
 * table is walked, where the walk stands and the rows skipped because they were locked. A batch
 * records its progress in the same statement as its writes (see `batchProgress`), so that a killed
 * process resumes exactly where the last committed batch ended.
 */
import type { Queryable } from '../db/connection.js';
import { quoteIdent, quoteLiteral } from '../core/quote.js';
import type { BACKFILL_STATUSES } from './schema.js';

/** Why a backfill holds back its batches: a replica behind, a busy server, sessions queued for the table's locks, an operator. */
export type ThrottleReason = 'replica_lag' | 'load' | 'lock_waiters' | 'manual';

/** A throttled backfill's reason, in words too, and how long it has been held back this time. */
export interface ThrottleState {
  reason: ThrottleReason;
  detail: string;
  seconds: number;
}

/** How a table is walked: by its primary key, a unique index over NOT NULL columns, or physical position. */
export type BackfillMethod = 'primary key' | 'unique index' | 'ctid';

/** A progress row as the backfill reads it back. Counters are bigints, so they come as strings. */
export interface BackfillRow {
  method: BackfillMethod;
  key_columns: string[];
  /** The last key (or page) a committed batch reached; null before the first batch. */
  cursor: string[] | number | null;
  upper_bound: string[] | number | null;
  /** Keys (or page ranges) skipped because an application transaction held them locked. */
  pending: (string[] | [number, number])[];
  rows_done: string;
  rows_total: string | null;
  batches: string;
  retries: string;
  status: 'running' | 'throttled' | 'stalled' | 'done';
  elapsed_seconds: number;
}

/** A table's backfill as `tandem status` shows it. */
export interface BackfillStatus {
  table: string;
  method: string;
  keyColumns: string[];
  rowsDone: number;
  rowsTotal: number | null;
  rowsPerSecond: number | null;
  batches: number;
  retries: number;
  status: (typeof BACKFILL_STATUSES)[number];
  startedAt: Date;
  lastProgressAt: Date;
  finishedAt: Date | null;
  /** Seconds since the last committed batch, for a backfill that is not done. */
  secondsSinceProgress: number | null;
  /** Set while the backfill is throttled. */
  throttle: ThrottleState | null;
  /** Seconds throttled in all, the current pause included. */
  throttledSeconds: number;
  /** The largest replica lag the backfill last measured, when it watches replicas. */
  replicaLagSeconds: number | null;
}

/** The backfills of one migration. */
export class BackfillStore {
  private readonly table: string;

  constructor(
    private readonly db: Queryable,
    stateSchema: string,
    private readonly migrationId: number,
  ) {
    this.table = `${quoteIdent(stateSchema)}.backfills`;
  }

  async load(table: string): Promise<BackfillRow | undefined> {
    const { rows } = await this.db.query<BackfillRow>(
      `SELECT method, key_columns, cursor, upper_bound, pending, rows_done, rows_total, batches, retries, status,
              extract(epoch FROM now() - started_at)::float8 AS elapsed_seconds
         FROM ${this.table} WHERE migration_id = $1 AND table_name = $2`,
      [this.migrationId, table],
    );
    return rows[0];
  }

  /** Records how `table` is walked and where the walk ends; a row already there (a resumed run) wins. */
  async begin(table: string, walk: { method: BackfillMethod; keyColumns: string[]; upperBound: string[] | number | null; rowsTotal: number | null; done: boolean }): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.table} (migration_id, table_name, method, key_columns, upper_bound, rows_total, status, finished_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $7 = 'done' THEN now() END)
       ON CONFLICT (migration_id, table_name) DO NOTHING`,
      [this.migrationId, table, walk.method, walk.keyColumns, JSON.stringify(walk.upperBound), walk.rowsTotal, walk.done ? 'done' : 'running'],
    );
  }

  /**
   * The CTE `progress AS (…)` that records one batch, for the batch's own statement: the store owns
   * the progress row's SQL, the backfill owns the walk, and putting both in one statement is what
   * makes a batch and its progress commit (or vanish) together. Returning a fragment rather than
   * running the batch here keeps the walk's SQL next to the code that chooses it. The fragment reads
   * a CTE `summary` (scanned, touched, last, skipped) and carries its values as literals: the batch
   * goes to the server as one simple-query message, which takes no parameters.
   */
  batchProgress(table: string): string {
    return `progress AS (
             UPDATE ${this.table} p
                SET cursor = s.last::jsonb, rows_done = p.rows_done + s.touched, batches = p.batches + 1,
                    pending = p.pending || s.skipped::jsonb, status = 'running', last_progress_at = now(),
                    rate = (p.rows_done + s.touched) / greatest(extract(epoch FROM now() - p.started_at), 0.001)
               FROM summary s
              WHERE p.migration_id = ${this.migrationId} AND p.table_name = ${quoteLiteral(table)} AND s.last IS NOT NULL
             RETURNING 1)`;
  }

  async countRetry(table: string): Promise<void> {
    await this.db.query(`UPDATE ${this.table} SET retries = retries + 1 WHERE migration_id = $1 AND table_name = $2`, [this.migrationId, table]);
  }

  async markStalled(table: string): Promise<void> {
    await this.db.query(`UPDATE ${this.table} SET status = 'stalled' WHERE migration_id = $1 AND table_name = $2`, [this.migrationId, table]);
  }

  /** The backfill holds back its batches from now on (or goes on being held back, for a new reason or lag). */
  async markThrottled(table: string, throttle: { reason: ThrottleReason; detail: string }, replicaLagSeconds: number | null): Promise<void> {
    await this.db.query(
      `UPDATE ${this.table}
          SET status = 'throttled', throttle_reason = $3, throttle_detail = $4, replica_lag_seconds = $5,
              throttled_since = CASE WHEN status = 'throttled' THEN throttled_since ELSE now() END
        WHERE migration_id = $1 AND table_name = $2`,
      [this.migrationId, table, throttle.reason, throttle.detail, replicaLagSeconds],
    );
  }

  /** The pause is over: its length joins the total, and the backfill counts as running (its next batch is due). */
  async markUnthrottled(table: string, replicaLagSeconds: number | null): Promise<void> {
    await this.db.query(
      `UPDATE ${this.table}
          SET status = 'running', throttle_reason = NULL, throttle_detail = NULL, throttled_since = NULL, replica_lag_seconds = $3,
              throttled_seconds = throttled_seconds + coalesce(extract(epoch FROM now() - throttled_since)::float8, 0),
              last_progress_at = now()
        WHERE migration_id = $1 AND table_name = $2`,
      [this.migrationId, table, replicaLagSeconds],
    );
  }

  async markDone(table: string): Promise<void> {
    await this.db.query(`UPDATE ${this.table} SET status = 'done', finished_at = now(), pending = '[]' WHERE migration_id = $1 AND table_name = $2`, [
      this.migrationId,
      table,
    ]);
  }

  /** The migration was rolled back: its unfinished backfills will never run again and must not read as running. */
  async abandon(): Promise<void> {
    await this.db.query(`UPDATE ${this.table} SET status = 'rolled_back', finished_at = COALESCE(finished_at, now()) WHERE migration_id = $1 AND status <> 'done'`, [
      this.migrationId,
    ]);
  }

  /** Every table's backfill, in the order they began. */
  async list(): Promise<BackfillStatus[]> {
    const { rows } = await this.db.query<{
      table_name: string;
      method: string;
      key_columns: string[];
      rows_done: string;
      rows_total: string | null;
      rate: number | null;
      batches: string;
      retries: string;
      status: BackfillStatus['status'];
      started_at: Date;
      last_progress_at: Date;
      finished_at: Date | null;
      idle: number;
      throttle: { reason: ThrottleReason | null; detail: string | null; seconds: number | null; before: number | null; lag: number | null };
    }>(
      // The throttle columns came with state version 3: read through to_jsonb, a state schema that
      // no start or init has upgraded yet (a newer tandem's first \`tandem status\`) shows no throttling.
      `SELECT table_name, method, key_columns, rows_done, rows_total, rate, batches, retries, status,
              started_at, last_progress_at, finished_at, extract(epoch FROM now() - last_progress_at)::float8 AS idle,
              json_build_object('reason', b.j->>'throttle_reason', 'detail', b.j->>'throttle_detail',
                                'seconds', extract(epoch FROM now() - (b.j->>'throttled_since')::timestamptz),
                                'before', (b.j->>'throttled_seconds')::float8, 'lag', (b.j->>'replica_lag_seconds')::float8) AS throttle
         FROM (SELECT *, to_jsonb(b) AS j FROM ${this.table} b WHERE migration_id = $1) b ORDER BY started_at`,
      [this.migrationId],
    );
    return rows.map((r) => ({
      table: r.table_name,
      method: r.method,
      keyColumns: r.key_columns,
      rowsDone: Number(r.rows_done),
      rowsTotal: r.rows_total === null ? null : Number(r.rows_total),
      rowsPerSecond: r.rate,
      batches: Number(r.batches),
      retries: Number(r.retries),
      status: r.status,
      startedAt: r.started_at,
      lastProgressAt: r.last_progress_at,
      finishedAt: r.finished_at,
      // Waiting on purpose is not waiting for progress: a throttled backfill has not stalled.
      secondsSinceProgress: r.status === 'done' || r.status === 'throttled' ? null : Math.round(r.idle),
      throttle:
        r.status === 'throttled' && r.throttle.reason
          ? { reason: r.throttle.reason, detail: r.throttle.detail ?? '', seconds: Math.round(r.throttle.seconds ?? 0) }
          : null,
      throttledSeconds: Math.round((r.throttle.before ?? 0) + (r.status === 'throttled' ? (r.throttle.seconds ?? 0) : 0)),
      replicaLagSeconds: r.throttle.lag,
    }));
  }
}
