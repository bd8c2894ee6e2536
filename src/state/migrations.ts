import { hostname, userInfo } from 'node:os';
import type { Queryable } from '../db/connection.js';
import type { Plan } from '../core/steps.js';
import { quoteIdent } from '../core/quote.js';
import type { MigrationStatus } from './schema.js';
import { IN_FLIGHT_STATUSES } from './schema.js';
import { BackfillStore } from './backfills.js';

/** One attempt to apply a migration, as the state schema records it. */
export interface MigrationRecord {
  id: number;
  schemaName: string;
  name: string;
  versionSchema: string;
  parent: string | null;
  digest: string;
  migration: unknown;
  file: string | null;
  status: MigrationStatus;
  plan: Plan;
  step: number;
  startedAt: Date;
  startedBy: string;
  startFinishedAt: Date | null;
  completedAt: Date | null;
  completedBy: string | null;
  rolledBackAt: Date | null;
  rolledBackBy: string | null;
  error: string | null;
  /** pgroll's migration_type (pgroll, inferred, baseline) of a row imported from pgroll's history; baseline for tandem baseline too. */
  pgrollType: string | null;
}

interface Row {
  id: string;
  schema_name: string;
  name: string;
  version_schema: string;
  parent: string | null;
  digest: string;
  migration: unknown;
  file: string | null;
  status: MigrationStatus;
  plan: Plan;
  step: number;
  started_at: Date;
  started_by: string;
  start_finished_at: Date | null;
  completed_at: Date | null;
  completed_by: string | null;
  rolled_back_at: Date | null;
  rolled_back_by: string | null;
  error: string | null;
  pgroll_type: string | null;
}

function fromRow(row: Row): MigrationRecord {
  return {
    id: Number(row.id),
    schemaName: row.schema_name,
    name: row.name,
    versionSchema: row.version_schema,
    parent: row.parent,
    digest: row.digest,
    migration: row.migration,
    file: row.file,
    status: row.status,
    plan: row.plan,
    step: row.step,
    startedAt: row.started_at,
    startedBy: row.started_by,
    startFinishedAt: row.start_finished_at,
    completedAt: row.completed_at,
    completedBy: row.completed_by,
    rolledBackAt: row.rolled_back_at,
    rolledBackBy: row.rolled_back_by,
    error: row.error,
    pgrollType: row.pgroll_type,
  };
}

/** Who is acting, for the history: user@host and process id. */
export function actor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (some containers): the host and pid still identify the process.
  }
  return `${user}@${hostname()} pid ${process.pid}`;
}

export class MigrationStore {
  private readonly table: string;

  constructor(
    private readonly db: Queryable,
    private readonly stateSchema: string,
    private readonly schema: string,
  ) {
    this.table = `${quoteIdent(stateSchema)}.migrations`;
  }

  /**
   * The oldest migration being started, active, being completed or being rolled back, if any: the
   * one `complete` works on when several are stacked.
   */
  async inFlight(): Promise<MigrationRecord | undefined> {
    return (await this.allInFlight())[0];
  }

  /** Every migration in flight, oldest first (more than one when migrations are stacked). */
  async allInFlight(): Promise<MigrationRecord[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM ${this.table} WHERE schema_name = $1 AND status = ANY($2::text[]) ORDER BY id`,
      [this.schema, IN_FLIGHT_STATUSES],
    );
    return rows.map(fromRow);
  }

  /** Completed migrations that left renames to migration `id` (see engine/restack.ts), oldest first. */
  async leftTo(id: number): Promise<MigrationRecord[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM ${this.table}
        WHERE schema_name = $1 AND status = 'complete' AND plan->'complete' @> pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('deferredTo', $2::int))
        ORDER BY id`,
      [this.schema, id],
    );
    return rows.map(fromRow);
  }

  /** One record, by id, as stored now. */
  async byId(id: number): Promise<MigrationRecord | undefined> {
    const { rows } = await this.db.query<Row>(`SELECT * FROM ${this.table} WHERE id = $1`, [id]);
    return rows[0] && fromRow(rows[0]);
  }

  /** Migrations that were applied or are being applied (rolled-back attempts excluded), oldest first. */
  async applied(): Promise<MigrationRecord[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM ${this.table} WHERE schema_name = $1 AND status <> 'rolled_back' ORDER BY id`,
      [this.schema],
    );
    return rows.map(fromRow);
  }

  /** Every attempt, newest first, rolled back ones included. */
  async history(limit = 50): Promise<MigrationRecord[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM ${this.table} WHERE schema_name = $1 ORDER BY id DESC LIMIT $2`,
      [this.schema, limit],
    );
    return rows.map(fromRow);
  }

  async latestComplete(): Promise<MigrationRecord | undefined> {
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM ${this.table} WHERE schema_name = $1 AND status = 'complete' ORDER BY id DESC LIMIT 1`,
      [this.schema],
    );
    return rows[0] && fromRow(rows[0]);
  }

  async insert(record: {
    name: string;
    versionSchema: string;
    parent: string | null;
    digest: string;
    migration: unknown;
    file: string | null;
    plan: Plan;
  }): Promise<MigrationRecord> {
    const { rows } = await this.db.query<Row>(
      `INSERT INTO ${this.table} (schema_name, name, version_schema, parent, digest, migration, file, status, plan, step, started_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'starting', $8, 0, $9)
       RETURNING *`,
      [this.schema, record.name, record.versionSchema, record.parent, record.digest, JSON.stringify(record.migration), record.file, JSON.stringify(record.plan), actor()],
    );
    return fromRow(rows[0]!);
  }

  /**
   * A migration recorded as complete without tandem running anything: one pgroll applied (with
   * pgroll's own times), or a baseline. Its plan is empty: there is nothing to roll back.
   */
  async insertApplied(record: {
    name: string;
    versionSchema: string;
    parent: string | null;
    digest: string;
    migration: unknown;
    pgrollType: string;
    createdAt: Date;
    updatedAt: Date;
    by: string;
  }): Promise<void> {
    const emptyPlan: Plan = { start: [], complete: [], rollback: [], retires: null };
    await this.db.query(
      `INSERT INTO ${this.table} (schema_name, name, version_schema, parent, digest, migration, status, plan, step, started_at, started_by,
                                  start_finished_at, completed_at, completed_by, updated_at, pgroll_type)
       VALUES ($1, $2, $3, $4, $5, $6, 'complete', $7, 0, $8, $10, $9, $9, $10, $9, $11)`,
      [this.schema, record.name, record.versionSchema, record.parent, record.digest, JSON.stringify(record.migration), JSON.stringify(emptyPlan), record.createdAt, record.updatedAt, record.by, record.pgrollType],
    );
  }

  /** Records that step `step` (and everything before it) is done. */
  /** Replaces a migration's plan (fitted to the migrations stacked with it, see engine/restack.ts). */
  async setPlan(id: number, plan: Plan, db: Queryable = this.db): Promise<void> {
    await db.query(`UPDATE ${this.table} SET plan = $2, updated_at = now() WHERE id = $1`, [id, JSON.stringify(plan)]);
  }

  async setStep(id: number, step: number, db: Queryable = this.db): Promise<void> {
    await db.query(`UPDATE ${this.table} SET step = $2, updated_at = now() WHERE id = $1`, [id, step]);
  }

  async setStatus(id: number, status: MigrationStatus, options: { step?: number; error?: string | null } = {}): Promise<void> {
    await this.db.query(
      `UPDATE ${this.table}
          SET status = $2::text, step = COALESCE($3::int, step), error = $5::text, updated_at = now(),
              start_finished_at = CASE WHEN $2::text = 'active' THEN COALESCE(start_finished_at, now()) ELSE start_finished_at END,
              completed_at = CASE WHEN $2::text = 'complete' THEN now() ELSE completed_at END,
              completed_by = CASE WHEN $2::text = 'complete' THEN $4::text ELSE completed_by END,
              rolled_back_at = CASE WHEN $2::text = 'rolled_back' THEN now() ELSE rolled_back_at END,
              rolled_back_by = CASE WHEN $2::text = 'rolled_back' THEN $4::text ELSE rolled_back_by END
        WHERE id = $1`,
      [id, status, options.step ?? null, actor(), options.error ?? null],
    );
    if (status === 'rolled_back') await new BackfillStore(this.db, this.stateSchema, id).abandon();
  }
}
