/**
 * `<state>.backfill_pauses`: one row per schema whose backfills an operator paused with
 * `tandem backfill --pause`. The running backfill reads it before each batch, so the pause works
 * from any machine that reaches the database, and outlives the process that set it.
 */
import type { Queryable } from '../db/connection.js';
import { quoteIdent } from '../core/quote.js';

export interface BackfillPause {
  pausedBy: string;
  pausedAt: Date;
}

export async function pauseBackfills(db: Queryable, stateSchema: string, schema: string, pausedBy: string): Promise<void> {
  await db.query(
    `INSERT INTO ${quoteIdent(stateSchema)}.backfill_pauses (schema_name, paused_by) VALUES ($1, $2)
     ON CONFLICT (schema_name) DO NOTHING`,
    [schema, pausedBy],
  );
}

/** True when there was a pause to lift. */
export async function resumeBackfills(db: Queryable, stateSchema: string, schema: string): Promise<boolean> {
  const { rowCount } = await db.query(`DELETE FROM ${quoteIdent(stateSchema)}.backfill_pauses WHERE schema_name = $1`, [schema]);
  return (rowCount ?? 0) > 0;
}

export async function readBackfillPause(db: Queryable, stateSchema: string, schema: string): Promise<BackfillPause | undefined> {
  const { rows } = await db.query<{ paused_by: string; paused_at: Date }>(
    `SELECT paused_by, paused_at FROM ${quoteIdent(stateSchema)}.backfill_pauses WHERE schema_name = $1`,
    [schema],
  );
  const row = rows[0];
  return row && { pausedBy: row.paused_by, pausedAt: row.paused_at };
}
