/**
 * Backfill: runs the sync triggers once on every row that existed before start, in small batches
 * that each commit on their own, so no lock is held for long and a killed run resumes where the
 * last committed batch ended (the cursor is saved in the same transaction as the batch).
 *
 * Rows are walked by the primary key, else by a unique index over NOT NULL columns (an index range
 * scan per batch: cost grows linearly with the table), else by physical position (ctid page ranges,
 * a TID range scan). Rows an application transaction holds locked are skipped (SKIP LOCKED) and
 * revisited at the end, waiting at most lock_timeout for each.
 *
 * Before each batch the backfill asks its Throttle whether it may go on (replicas, load, lock
 * waiters, an operator's pause), and waits while it may not. With a batch time, each batch is sized
 * from the last one's duration to take about that long, never above the batch size.
 */
import type pg from 'pg';
import { isDatabaseError } from '../errors/index.js';
import type { Logger } from '../observe/logger.js';
import type { BackfillMetrics } from '../observe/backfill-metrics.js';
import type { BackfillProgress } from '../observe/progress.js';
import { isLockTimeout, type Executor } from './executor.js';
import { retry, sleep } from './retry.js';
import { BackfillStore, type BackfillMethod, type BackfillRow } from '../state/backfills.js';
import type { BackfillStep } from '../core/steps.js';
import { qualified, quoteIdent, quoteLiteral } from '../core/quote.js';
import { BACKFILL_SETTING } from '../core/triggers.js';
import type { Throttle, ThrottleCheck, ThrottleVerdict } from './throttle.js';

/** Sized batches start small and at most double each time: the first batches on a cold table are the slow ones. */
const ADAPTIVE_FIRST_BATCH = 100;
const ADAPTIVE_FLOOR = 10;
/** How often a throttled backfill asks again whether it may go on. */
const THROTTLE_POLL_MS = 500;

export interface BackfillOptions {
  /** Rows per batch; with `batchTimeMs`, the most a batch asks for. */
  batchSize: number;
  /** Size each batch to take about this long (from the previous batch's time), instead of a fixed count. */
  batchTimeMs?: number;
  batchDelayMs: number;
  /** No progress for this long: reported as stalled (log, metric, state). */
  stallTimeoutMs: number;
  /** Asked before each batch; none: batches never wait. */
  throttle?: Throttle;
  logger: Logger;
  metrics?: BackfillMetrics;
  onProgress?: (progress: BackfillProgress) => void;
}

interface KeyColumn {
  name: string;
  type: string;
}

export class Backfill {
  private readonly table: string;
  private readonly store: BackfillStore;
  private keys: KeyColumn[] = [];
  private stalled = false;
  private lastProgressAt = Date.now();
  private row!: BackfillRow;
  private readonly startedAt = Date.now();
  private rowsAtStart = 0;
  /** Rows the next batch asks for. */
  private size: number;
  private throttled: (ThrottleVerdict & { since: number }) | undefined;
  private throttledMs = 0;
  private replicaLagSeconds: number | null = null;

  constructor(
    private readonly executor: Executor,
    stateSchema: string,
    migrationId: number,
    schema: string,
    private readonly step: BackfillStep,
    private readonly options: BackfillOptions,
  ) {
    this.table = qualified(schema, step.table);
    this.store = new BackfillStore(executor.db, stateSchema, migrationId);
    this.size = options.batchTimeMs ? Math.min(options.batchSize, ADAPTIVE_FIRST_BATCH) : options.batchSize;
  }

  private get db(): pg.Client {
    return this.executor.db;
  }

  async run(): Promise<BackfillProgress> {
    this.row = (await this.store.load(this.step.table)) ?? (await this.begin());
    this.rowsAtStart = Number(this.row.rows_done);
    if (this.row.status !== 'done') {
      this.keys = await this.keyColumns(this.row.key_columns);
      this.options.logger.info(
        { table: this.step.table, method: this.row.method, keys: this.row.key_columns, rowsTotal: numberOrNull(this.row.rows_total), resumedAt: this.row.cursor },
        `backfilling ${this.step.table} by ${describeMethod(this.row)}${this.row.cursor !== null ? ' (resuming)' : ''}`,
      );
      for (;;) {
        await this.waitWhileThrottled();
        if (await this.batch()) break;
        if (this.options.batchDelayMs > 0) await sleep(this.options.batchDelayMs);
      }
      await this.revisitPending();
      await this.store.markDone(this.step.table);
      this.row.status = 'done';
    }
    const progress = this.progress();
    this.options.onProgress?.(progress);
    this.options.logger.info({ ...progress }, `backfill of ${this.step.table} done: ${progress.rowsDone} rows`);
    return progress;
  }

  /** Chooses how to walk the table and records the starting point. */
  private async begin(): Promise<BackfillRow> {
    const keyed = await this.chooseKey();
    const estimate = await this.db.query<{ reltuples: number; pages: number }>(
      `SELECT reltuples::float8 AS reltuples, (pg_relation_size(oid) / current_setting('block_size')::int)::float8 AS pages
         FROM pg_class WHERE oid = $1::regclass`,
      [this.table],
    );
    const { reltuples, pages } = estimate.rows[0]!;
    let total = reltuples > 0 ? Math.round(reltuples) : null;
    if (total === null) {
      // Never analyzed: count, once. Only an AccessShareLock, which blocks nobody's writes.
      const counted = await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.table}`);
      total = Number(counted.rows[0]!.n);
    }
    let upper: string[] | number | null;
    if (keyed) {
      this.keys = keyed.columns;
      const order = this.keys.map((k) => `${quoteIdent(k.name)} DESC`).join(', ');
      const { rows } = await this.db.query<{ key: string[] }>(`SELECT ${this.keyArray('')} AS key FROM ${this.table} ORDER BY ${order} LIMIT 1`);
      upper = rows[0]?.key ?? null;
    } else {
      upper = pages;
    }
    const method: BackfillMethod = keyed ? keyed.method : 'ctid';
    const empty = upper === null || upper === 0 || total === 0;
    await this.store.begin(this.step.table, { method, keyColumns: this.keys.map((k) => k.name), upperBound: upper, rowsTotal: total, done: empty });
    if (empty) this.options.logger.info({ table: this.step.table }, `${this.step.table} is empty: nothing to backfill`);
    return (await this.store.load(this.step.table))!;
  }

  /** The primary key, else the narrowest unique index whose columns are all NOT NULL. */
  private async chooseKey(): Promise<{ method: BackfillMethod; columns: KeyColumn[] } | undefined> {
    const { rows } = await this.db.query<{ primary: boolean; columns: string[]; types: string[] }>(
      `SELECT i.indisprimary AS primary,
              array_agg(a.attname::text ORDER BY k.ord) AS columns,
              array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord) AS types
         FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
          AND k.ord <= i.indnkeyatts
        GROUP BY i.indexrelid, i.indisprimary
       HAVING bool_and(a.attnotnull) AND bool_and(k.attnum > 0)
        ORDER BY i.indisprimary DESC, count(*), i.indexrelid
        LIMIT 1`,
      [this.table],
    );
    const best = rows[0];
    if (!best) return undefined;
    return { method: best.primary ? 'primary key' : 'unique index', columns: best.columns.map((name, i) => ({ name, type: best.types[i]! })) };
  }

  private async keyColumns(names: string[]): Promise<KeyColumn[]> {
    if (!names.length) return [];
    const { rows } = await this.db.query<{ name: string; type: string }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
         FROM unnest($2::text[]) WITH ORDINALITY AS n(name, ord)
         JOIN pg_attribute a ON a.attrelid = $1::regclass AND a.attname = n.name
        ORDER BY n.ord`,
      [this.table, names],
    );
    return rows;
  }

  /** `ARRAY[k1::text, k2::text]` over the given alias. */
  private keyArray(alias: string): string {
    const prefix = alias ? `${alias}.` : '';
    return `ARRAY[${this.keys.map((k) => `${prefix}${quoteIdent(k.name)}::text`).join(', ')}]`;
  }

  /** `(k1, k2) op ('v1'::t1, 'v2'::t2)`: literals, so that a batch needs no parameters. */
  private keyComparison(op: string, values: string[]): string {
    const literals = this.keys.map((k, i) => `${quoteLiteral(values[i]!)}::${k.type}`);
    return `(${this.keys.map((k) => quoteIdent(k.name)).join(', ')}) ${op} (${literals.join(', ')})`;
  }

  /**
   * One batch, committed with its progress. Returns true when the table has been walked through.
   *
   * The first try updates the batch's rows directly: a row an application transaction holds makes it
   * wait, at most lock_timeout. If that happens, the retry locks the batch's rows first with SKIP
   * LOCKED and leaves the held ones for the end (`pending`). Rows whose ctid changed since they were
   * scanned were updated by the application meanwhile, through the trigger: nothing left to do there.
   */
  private async batch(): Promise<boolean> {
    const size = this.size;
    const set = this.setClause();
    let scanned: string;
    let last: (alias: string) => string;
    let skippedRange: string;
    /** What the first try (which waits for locked rows rather than skipping them) updates, and the CTE it needs for that. */
    let direct: { scan: string; rows: string; scannedCount: string };
    if (this.row.method === 'ctid') {
      const from = (this.row.cursor as number | null) ?? 0;
      const upper = this.row.upper_bound as number;
      if (from >= upper) return true;
      const perPage = Math.max(1, Number(this.row.rows_total ?? 0) / Math.max(1, upper));
      // Rounded, not floored: pages of 157 rows and batches of 5000 take 32 pages (5024 rows), not
      // 31, and a 637-page table 20 batches, not 21.
      const to = Math.min(upper, from + Math.max(1, Math.round(size / perPage)));
      const range = `ctid >= '(${from},0)'::tid AND ctid < '(${to},0)'::tid`;
      scanned = `SELECT ctid AS tid FROM ${this.table} WHERE ${range}`;
      // The page range itself, by a TID range scan: no list of ctids to build and look up again.
      direct = { scan: '', rows: range, scannedCount: '(SELECT count(*) FROM touched)' };
      last = () => `to_json(${to})`;
      skippedRange = `CASE WHEN EXISTS (SELECT 1 FROM scanned s WHERE s.tid NOT IN (SELECT tid FROM locked))
                           THEN json_build_array(json_build_array(${from}, ${to})) ELSE '[]'::json END`;
    } else {
      const conditions: string[] = [];
      if (this.row.cursor) conditions.push(this.keyComparison('>', this.row.cursor as string[]));
      conditions.push(this.keyComparison('<=', this.row.upper_bound as string[]));
      const order = this.keys.map((k) => quoteIdent(k.name)).join(', ');
      const orderDesc = this.keys.map((k) => `${quoteIdent(k.name)} DESC`).join(', ');
      scanned = `SELECT ctid AS tid, ${order} FROM ${this.table} WHERE ${conditions.join(' AND ')} ORDER BY ${order} LIMIT ${size}`;
      // ORDER BY, not max(): the key's type need not have a max aggregate (uuid has none). The JSON
      // is built for the one row the inner query keeps, not for every row of the batch.
      last = (alias) => `(SELECT to_json(${this.keyArray(alias)}) FROM (SELECT * FROM scanned ORDER BY ${orderDesc} LIMIT 1) ${alias})`;
      skippedRange = `(SELECT coalesce(json_agg(${this.keyArray('s')}), '[]'::json) FROM scanned s WHERE s.tid NOT IN (SELECT tid FROM locked))`;
      direct = { scan: `scanned AS MATERIALIZED (${scanned}),`, rows: 'ctid = ANY (ARRAY(SELECT tid FROM scanned))', scannedCount: '(SELECT count(*) FROM scanned)' };
    }
    // The batch records its own progress in the same statement, so both commit (or not) together.
    const progress = `${this.store.batchProgress(this.step.table)}
      SELECT * FROM summary`;
    const waiting = `WITH ${direct.scan}
           touched AS (UPDATE ${this.table} SET ${set} WHERE ${direct.rows} RETURNING 1),
           summary AS (SELECT ${direct.scannedCount}::int AS scanned, (SELECT count(*) FROM touched)::int AS touched,
                              ${last('s')} AS last, '[]'::json AS skipped),
           ${progress}`;
    const skipLocked = `WITH scanned AS MATERIALIZED (${scanned}),
           locked AS MATERIALIZED (
             SELECT ctid AS tid FROM ${this.table} WHERE ctid = ANY (ARRAY(SELECT tid FROM scanned)) FOR NO KEY UPDATE SKIP LOCKED),
           touched AS (UPDATE ${this.table} SET ${set} WHERE ctid = ANY (ARRAY(SELECT tid FROM locked)) RETURNING 1),
           summary AS (SELECT (SELECT count(*) FROM scanned)::int AS scanned, (SELECT count(*) FROM touched)::int AS touched,
                              ${last('s')} AS last, ${skippedRange} AS skipped),
           ${progress}`;

    // A batch and its progress commit together; if a crash loses the last few commits, it loses
    // both and the resumed backfill redoes exactly those batches. So no commit needs to wait for its
    // WAL flush (the application's own commits are unaffected).
    const settings: Record<string, string> = { synchronous_commit: 'off' };
    if (this.step.assignments) settings[BACKFILL_SETTING] = 'on';
    let tookMs = 0;
    const result = await this.withLockRetries(async (attempt) => {
      // Only the try that went through counts towards sizing: a lock wait says nothing of the batch's cost.
      const began = performance.now();
      const { rows } = await this.executor.transactionOf<{ scanned: number; touched: number; last: string[] | number | null; skipped: BackfillRow['pending'] }>(
        attempt === 1 ? waiting : skipLocked,
        settings,
      );
      tookMs = performance.now() - began;
      return rows[0]!;
    });

    // A key walk that finds no row is past its end; a page range may hold no live row and the pages after it still some.
    if (result.last === null) return true;
    this.row.cursor = result.last;
    this.row.rows_done = String(Number(this.row.rows_done) + result.touched);
    this.row.batches = String(Number(this.row.batches) + 1);
    this.row.pending = [...this.row.pending, ...result.skipped];
    const finished = this.row.method === 'ctid' ? (result.last as number) >= (this.row.upper_bound as number) : result.scanned < size;
    // The last batch is short: its time says nothing of what a full one costs.
    if (!finished) this.resize(tookMs);
    this.madeProgress(result.touched);
    return finished;
  }

  /** The next batch's rows, from how long this one took against the batch time. */
  private resize(tookMs: number): void {
    const target = this.options.batchTimeMs;
    if (!target) return;
    const wanted = Math.round((this.size * target) / Math.max(tookMs, 1));
    this.size = Math.max(Math.min(ADAPTIVE_FLOOR, this.options.batchSize), Math.min(this.options.batchSize, this.size * 2, wanted));
  }

  /**
   * Holds back the next batch for as long as the throttle says so, keeping the state row, metrics,
   * log and progress saying why. A throttled backfill is not stalled: the stall clock restarts after.
   */
  private async waitWhileThrottled(): Promise<void> {
    const throttle = this.options.throttle;
    if (!throttle) return;
    let check = await throttle.check(this.db, this.table);
    this.noteReplicaLags(check);
    if (!check.verdict) return;
    const table = this.step.table;
    const metrics = this.options.metrics;
    const since = Date.now();
    let counted = since;
    while (check.verdict) {
      const verdict = check.verdict;
      const previous = this.throttled;
      if (previous && metrics) metrics.throttledSeconds.inc({ table, reason: previous.reason }, (Date.now() - counted) / 1000);
      counted = Date.now();
      if (previous?.reason !== verdict.reason) {
        if (previous) metrics?.throttled.set({ table, reason: previous.reason }, 0);
        metrics?.throttled.set({ table, reason: verdict.reason }, 1);
        this.options.logger.warn({ table, reason: verdict.reason, detail: verdict.detail }, `backfill of ${table} throttled (${verdict.reason}): ${verdict.detail}`);
      }
      this.throttled = { ...verdict, since };
      await this.store.markThrottled(table, verdict, check.replicaLagSeconds);
      this.options.onProgress?.(this.progress());
      await sleep(THROTTLE_POLL_MS);
      check = await throttle.check(this.db, this.table);
      this.noteReplicaLags(check);
    }
    const reason = this.throttled!.reason;
    metrics?.throttledSeconds.inc({ table, reason }, (Date.now() - counted) / 1000);
    metrics?.throttled.set({ table, reason }, 0);
    this.throttled = undefined;
    this.throttledMs += Date.now() - since;
    await this.store.markUnthrottled(table, check.replicaLagSeconds);
    this.lastProgressAt = Date.now();
    this.options.logger.info({ table, throttledSeconds: Math.round((Date.now() - since) / 1000) }, `backfill of ${table} goes on after ${Math.round((Date.now() - since) / 1000)} s throttled (${reason})`);
    this.options.onProgress?.(this.progress());
  }

  private noteReplicaLags(check: ThrottleCheck): void {
    this.replicaLagSeconds = check.replicaLagSeconds;
    for (const [replica, lag] of check.replicas) this.options.metrics?.replicaLag.set({ replica }, lag ?? -1);
  }

  /** Rows that were locked when their batch ran: now wait for them, at most lock_timeout each try. */
  private async revisitPending(): Promise<void> {
    const pending = this.row.pending;
    if (!pending.length) return;
    this.options.logger.info({ table: this.step.table, rows: pending.length }, `revisiting ${pending.length} skipped ${this.row.method === 'ctid' ? 'page ranges' : 'rows'} of ${this.step.table}`);
    const set = this.setClause();
    for (let i = 0; i < pending.length; i += this.options.batchSize) {
      await this.waitWhileThrottled();
      const chunk = pending.slice(i, i + this.options.batchSize);
      let sql: string;
      let params: unknown[];
      if (this.row.method === 'ctid') {
        const ranges = (chunk as [number, number][]).map(([from, to]) => `(ctid >= '(${from},0)'::tid AND ctid < '(${to},0)'::tid)`);
        sql = `UPDATE ${this.table} SET ${set} WHERE ${ranges.join(' OR ')}`;
        params = [];
      } else {
        const columns = this.keys.map((k) => quoteIdent(k.name)).join(', ');
        const arrays = this.keys.map((k, j) => `$${j + 1}::text[]::${k.type}[]`).join(', ');
        sql = `UPDATE ${this.table} SET ${set} WHERE (${columns}) IN (SELECT * FROM unnest(${arrays}))`;
        params = this.keys.map((_, j) => (chunk as string[][]).map((key) => key[j]));
      }
      await this.withLockRetries(() =>
        this.executor.inTransaction(() => this.db.query(sql, params), this.step.assignments ? { [BACKFILL_SETTING]: 'on' } : {}),
      );
      this.madeProgress(0);
    }
  }

  /** What each backfilled row gets: the synced columns computed here, or a no-op that fires the trigger. */
  private setClause(): string {
    if (this.step.assignments) return this.step.assignments;
    const touch = quoteIdent(this.step.touchColumn);
    return `${touch} = ${touch}`;
  }

  /** Retries forever on lock timeouts (reporting a stall when it lasts); other errors end the backfill. */
  private async withLockRetries<T>(body: (attempt: number) => Promise<T>): Promise<T> {
    return retry(body, {
      attempts: Infinity,
      baseDelayMs: 50,
      maxDelayMs: 2000,
      retryOn: isLockTimeout,
      // The first retry skips locked rows instead of waiting for them: nothing to wait for.
      firstRetryAtOnce: true,
      onRetry: async ({ attempt, delayMs }) => {
        this.row.retries = String(Number(this.row.retries) + 1);
        this.options.metrics?.retries.inc({ table: this.step.table });
        await this.store.countRetry(this.step.table).catch(() => {});
        await this.checkStall();
        this.options.logger.debug({ table: this.step.table, attempt, retryInMs: delayMs }, 'backfill batch hit a lock; retrying');
      },
    }).catch((error: unknown) => {
      throw describeBackfillError(error, this.step.table);
    });
  }

  private async checkStall(): Promise<void> {
    if (this.stalled || Date.now() - this.lastProgressAt < this.options.stallTimeoutMs) return;
    this.stalled = true;
    this.options.metrics?.stalled.set({ table: this.step.table }, 1);
    this.options.logger.warn(
      { table: this.step.table, secondsWithoutProgress: Math.round((Date.now() - this.lastProgressAt) / 1000) },
      `backfill of ${this.step.table} is stalled: no batch committed for ${Math.round(this.options.stallTimeoutMs / 1000)} s (another session holds a lock on the table)`,
    );
    await this.store.markStalled(this.step.table).catch(() => {});
    this.options.onProgress?.(this.progress());
  }

  private madeProgress(rows: number): void {
    this.lastProgressAt = Date.now();
    const metrics = this.options.metrics;
    if (metrics) {
      metrics.rows.inc({ table: this.step.table }, rows);
      metrics.batches.inc({ table: this.step.table });
      metrics.lastProgress.set({ table: this.step.table }, Date.now() / 1000);
      metrics.stalled.set({ table: this.step.table }, 0);
      metrics.batchSize.set({ table: this.step.table }, this.size);
    }
    if (this.stalled) {
      this.stalled = false;
      this.options.logger.info({ table: this.step.table }, `backfill of ${this.step.table} is moving again`);
    }
    this.options.onProgress?.(this.progress());
  }

  private progress(): BackfillProgress {
    const rowsDone = Number(this.row.rows_done);
    const seconds = (Date.now() - this.startedAt) / 1000;
    return {
      table: this.step.table,
      method: describeMethod(this.row),
      rowsDone,
      rowsTotal: numberOrNull(this.row.rows_total),
      rowsPerSecond: seconds > 0.05 ? (rowsDone - this.rowsAtStart) / seconds : null,
      batches: Number(this.row.batches),
      retries: Number(this.row.retries),
      stalled: this.stalled,
      throttle: this.throttled ? { reason: this.throttled.reason, detail: this.throttled.detail, seconds: Math.round((Date.now() - this.throttled.since) / 1000) } : null,
      throttledSeconds: Math.round((this.throttledMs + (this.throttled ? Date.now() - this.throttled.since : 0)) / 1000),
      replicaLagSeconds: this.replicaLagSeconds,
      adaptiveBatchSize: this.options.batchTimeMs ? this.size : null,
      done: this.row.status === 'done',
    };
  }
}

function describeMethod(row: Pick<BackfillRow, 'method' | 'key_columns'>): string {
  if (row.method === 'ctid') return 'physical position (ctid ranges: the table has no primary key or unique NOT NULL columns)';
  return `${row.method} (${row.key_columns.join(', ')})`;
}

function numberOrNull(value: string | null): number | null {
  return value === null ? null : Number(value);
}

function describeBackfillError(error: unknown, table: string): unknown {
  if (isDatabaseError(error)) {
    error.message = `backfill of ${table} failed: ${error.message}`;
  }
  return error;
}
