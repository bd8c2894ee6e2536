/**
 * The one place that runs DDL. Every transactional step runs in its own short transaction under
 * `lock_timeout`; when the lock does not come in time the transaction gives up (so the application's
 * queries queued behind it go on), waits with exponential backoff and jitter, and tries again.
 */
import type pg from 'pg';
import { isDatabaseError, type LockHolder, TandemError } from '../errors/index.js';
import type { Logger } from '../observe/logger.js';
import type { SqlStep } from '../core/steps.js';
import { retry, type RetryPolicy } from './retry.js';

export const DEFAULT_RETRY: RetryPolicy = { attempts: 25, baseDelayMs: 100, maxDelayMs: 5000 };

export interface ExecutorOptions {
  lockTimeoutMs: number;
  logger: Logger;
  retry?: RetryPolicy;
}

/** SQLSTATEs that mean "someone else holds what we need": worth waiting and trying again. */
const RETRYABLE = new Set(['55P03', '40P01']);

export function isLockTimeout(error: unknown): boolean {
  return isDatabaseError(error) && RETRYABLE.has(error.code);
}

export class Executor {
  readonly db: pg.Client;
  readonly lockTimeoutMs: number;
  private readonly logger: Logger;
  private readonly retry: RetryPolicy;

  constructor(db: pg.Client, options: ExecutorOptions) {
    this.db = db;
    this.lockTimeoutMs = options.lockTimeoutMs;
    this.logger = options.logger;
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  /**
   * Runs a step. For a transactional step, `inTransaction` runs inside the same transaction after the
   * statements (the caller records progress there, so progress and effect commit together).
   */
  async run(step: SqlStep, inTransaction?: (db: pg.Client) => Promise<void>): Promise<void> {
    await this.withRetries(step.description, step.lockTarget, async () => {
      if (step.transactional) {
        await this.inTransaction(async () => inTransaction?.(this.db), step.searchPath ? { search_path: step.searchPath } : {}, step.statements);
        return;
      }
      // CREATE/DROP INDEX CONCURRENTLY: take no lock that blocks writes, but wait for older
      // transactions to finish; a lock_timeout would only make them start over, so none is set.
      const sessionSearchPath = step.searchPath ? (await this.db.query<{ search_path: string }>('SHOW search_path')).rows[0]!.search_path : undefined;
      await this.db.query('SET lock_timeout = 0');
      try {
        for (const statement of step.cleanup ?? []) await this.db.query(statement);
        if (step.searchPath) await this.db.query(`SET search_path = ${step.searchPath}`);
        for (const statement of step.statements) await this.db.query(statement);
      } finally {
        await this.db.query(`SET lock_timeout = ${this.lockTimeoutMs}`);
        if (sessionSearchPath !== undefined) await this.db.query(`SET search_path = ${sessionSearchPath}`);
      }
      await inTransaction?.(this.db);
    });
  }

  /** BEGIN; SET LOCAL lock_timeout; `statements`; body; COMMIT — or ROLLBACK and rethrow. */
  async inTransaction<T>(body: () => Promise<T>, settings: Record<string, string> = {}, statements: readonly string[] = []): Promise<T> {
    try {
      // One round trip for BEGIN, the transaction's settings and a step's DDL: after an error the
      // rest of the message is skipped and the transaction is left aborted, as it would be one by one.
      // A line break, not just `;`: a `--` comment ending a statement must not swallow the next.
      await this.db.query(['BEGIN', ...this.localSettings(settings), ...statements].join(';\n'));
      const result = await body();
      await this.db.query('COMMIT');
      return result;
    } catch (error) {
      await this.db.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }

  /**
   * `inTransaction` around one statement, in one round trip: BEGIN, the settings, the statement and
   * COMMIT go as one simple-query message, so a short statement run many times (a backfill batch)
   * does not wait for the network three times. The statement must carry its values as literals.
   */
  async transactionOf<R extends pg.QueryResultRow>(statement: string, settings: Record<string, string> = {}): Promise<pg.QueryResult<R>> {
    const locals = this.localSettings(settings);
    try {
      // A line break, not just `;`: a `--` comment ending the statement must not swallow the COMMIT.
      const results = (await this.db.query(['BEGIN', ...locals, statement, 'COMMIT'].join(';\n'))) as unknown as pg.QueryResult<R>[];
      return results[1 + locals.length]!;
    } catch (error) {
      // After an error the rest of the message is skipped and the transaction is left aborted.
      await this.db.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }

  private localSettings(settings: Record<string, string>): string[] {
    return Object.entries({ lock_timeout: String(this.lockTimeoutMs), ...settings }).map(([name, value]) => `SET LOCAL ${name} = ${value}`);
  }

  /** Retries `body` on lock timeouts and deadlocks; anything else fails at once. */
  async withRetries<T>(description: string, lockTarget: string | undefined, body: () => Promise<T>): Promise<T> {
    return retry(body, {
      ...this.retry,
      retryOn: isLockTimeout,
      onRetry: ({ attempt, delayMs }) =>
        this.logger.warn(
          { step: description, table: lockTarget, attempt, retryInMs: delayMs, lockTimeoutMs: this.lockTimeoutMs },
          `lock not available for "${description}"; retrying`,
        ),
      giveUp: (error, attempts) => this.lockFailure(description, lockTarget, attempts, error),
    });
  }

  /** A lock-timeout failure that says who holds the lock. */
  private async lockFailure(description: string, lockTarget: string | undefined, attempts: number, cause: unknown): Promise<TandemError> {
    let holders: LockHolder[] = [];
    if (lockTarget) {
      const { rows } = await this.db
        .query<{ pid: number; mode: string; state: string | null; query: string | null }>(
          `SELECT l.pid, l.mode, a.state, left(a.query, 120) AS query
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid()
            ORDER BY l.pid`,
          [lockTarget],
        )
        .catch(() => ({ rows: [] }));
      holders = rows;
    }
    return new TandemError({ kind: 'lock_timeout', step: description, table: lockTarget, lockTimeoutMs: this.lockTimeoutMs, attempts, holders }, { cause });
  }
}
