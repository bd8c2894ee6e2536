/**
 * Runs migrations: start (expand), complete (contract) and rollback, each a walk over the steps of
 * the stored plan. Progress is recorded after every step (inside the step's own transaction when it
 * has one), so an interrupted run continues at the step where it stopped.
 */
import type pg from 'pg';
import { readSchema } from '../catalog/read.js';
import { formatError, TandemError, type VersionSchemaConflict } from '../errors/index.js';
import type { LoadedMigration } from '../migration/load.js';
import { versionSchemaName } from '../migration/names.js';
import type { BackfillMetrics } from '../observe/backfill-metrics.js';
import type { Logger } from '../observe/logger.js';
import { DEFAULT_STALE_AFTER_MS } from '../state/heartbeats.js';
import { MigrationStore, type MigrationRecord } from '../state/migrations.js';
import { IN_FLIGHT_STATUSES, initStateSchema, KEEP_OUT_OF_PGROLL_HISTORY, stateSchemaExists } from '../state/schema.js';
import { releaseMigrationLock, takeMigrationLock } from '../state/migration-lock.js';
import { listVersions } from '../state/versions.js';
import { Backfill } from './backfill.js';
import { Throttle, type ThrottleSettings } from './throttle.js';
import type { BackfillProgress } from '../observe/progress.js';
import { awaitProxies, awaitRetirable, type DrainOptions } from './drain.js';
import { crashPointReached } from './crash-points.js';
import { whatWorksNow } from './next-command.js';
import { Executor } from './executor.js';
import { retry, type RetryPolicy } from './retry.js';
import { SchemaModel } from '../core/model.js';
import type { Plan, Step } from '../core/steps.js';
import { versionSchemaReady } from './status.js';
import { expressionCheckFor, planMigration, type ExpressionCheck } from './plan-migration.js';
import { DEFAULT_MAX_ACTIVE_MIGRATIONS, refuseStacking, refuseStackingAll, stackBase, tablesNamedBy } from './stack.js';
import { fitComplete, fitRollback } from './restack.js';
import type { StackBase } from '../core/planner.js';
import type { SchemaInfo } from '../core/catalog-types.js';
import { MAX_IDENTIFIER_BYTES } from '../core/quote.js';
import { fixedSearchPath } from '../core/triggers.js';
import { describeMissing, missingObjects } from './verify.js';
import { createVersionSchemaSql } from '../core/views.js';
import { anotherProcessTookOver, connectionLost, isLostConnection, phaseFailure, rootCause, StepFailure, type Phase } from './run-failures.js';

export interface EngineSettings {
  schema: string;
  stateSchema: string;
  lockTimeoutMs: number;
  backfillBatchSize: number;
  backfillBatchDelayMs: number;
  /** Size backfill batches to take about this long each, at most backfillBatchSize rows. */
  backfillBatchTimeMs?: number;
  /** When backfills hold back their batches: replica lag, load, lock waiters, a throttle file. */
  throttle?: ThrottleSettings;
  stallTimeoutMs: number;
  /** false: start creates no version schema (pgroll's --use-version-schema=false). Default true. */
  useVersionSchema?: boolean;
  /** How many migrations may be active at once (stacked, see stack.ts); 1: start refuses while one is. Default 3. */
  maxActiveMigrations?: number;
  logger: Logger;
  retry?: RetryPolicy;
  metrics?: BackfillMetrics;
  onBackfillProgress?: (progress: BackfillProgress) => void;
  /**
   * How to open a new session when the server goes away mid-run (a restart, a failover, a broken
   * network): the run reconnects, takes its lock again and goes on from its last recorded step,
   * for at most `timeoutMs`. Without it a lost connection ends the run (the state says where).
   */
  reconnect?: { connect: () => Promise<pg.Client>; timeoutMs: number };
}

/** The defaults DESIGN.md gives the CLI flags, for callers that run the engine directly. */
export const ENGINE_DEFAULTS = {
  schema: 'public',
  stateSchema: 'tandem',
  lockTimeoutMs: 500,
  // Not pgroll's 1000: a batch's fixed cost (its statement, key scan and commit) weighs too much at
  // 1000 rows, and 5000 rows still lock for tens of milliseconds only (README, bench/README.md).
  backfillBatchSize: 5000,
  backfillBatchDelayMs: 0,
  stallTimeoutMs: 60_000,
} as const satisfies Omit<EngineSettings, 'logger'>;

export interface StartOutcome {
  record: MigrationRecord;
  resumed: boolean;
  warnings: string[];
  completed: boolean;
}

export interface StartOptions {
  complete?: boolean;
  completeOptions?: CompleteOptions;
  /** Only warn about `up`/`down` expressions the server cannot plan (pgroll's --skip-validation). */
  skipValidation?: boolean;
}

export interface CompleteOptions extends DrainOptions {
  /** Retire the previous version even while clients use it. */
  force?: boolean;
}

export class Migrator {
  private db: pg.Client;
  private executor!: Executor;
  private store!: MigrationStore;

  constructor(
    db: pg.Client,
    private readonly settings: EngineSettings,
  ) {
    this.db = db;
    this.use(db);
  }

  get logger(): Logger {
    return this.settings.logger;
  }

  /** The session the migrator runs on now: another one than it was given after a reconnect. */
  get connection(): pg.Client {
    return this.db;
  }

  private use(db: pg.Client): void {
    this.db = db;
    this.executor = new Executor(db, { lockTimeoutMs: this.settings.lockTimeoutMs, logger: this.settings.logger, retry: this.settings.retry });
    this.store = new MigrationStore(db, this.settings.stateSchema, this.settings.schema);
  }

  /**
   * Validates and plans without changing anything. With other migrations active, the plan stacks it
   * on them, or the migration is refused (see stack.ts); `stackedOn` says on which, as they were.
   */
  async plan(
    loaded: LoadedMigration,
    expressions: ExpressionCheck = 'refuse',
    options: { complete?: boolean } = {},
  ): Promise<{ plan: Plan; warnings: string[]; versionSchema: string; stackedOn: string }> {
    await this.prepareSession();
    return this.planInSession(loaded, expressions, options);
  }

  /** `plan` on a session already prepared (start's): the same reads, without setting it up again. */
  private async planInSession(
    loaded: LoadedMigration,
    expressions: ExpressionCheck,
    options: { complete?: boolean },
  ): Promise<{ plan: Plan; warnings: string[]; versionSchema: string; stackedOn: string }> {
    await this.requireSchema();
    const versionSchema = this.versionSchemaOf(loaded);
    const createVersionSchema = this.settings.useVersionSchema !== false;
    if (createVersionSchema) await this.refuseVersionSchema(versionSchema, loaded);
    const stateExists = await stateSchemaExists(this.db, this.settings.stateSchema);
    const previous = stateExists ? await this.previousVersionSchema() : null;
    const active = stateExists ? await this.othersInFlight(loaded.migration.name) : [];
    let stackedOn: StackBase | undefined;
    // Read once for both: what the migration touches and its plan (stackBase changes nothing).
    let schema: SchemaInfo | undefined;
    if (active.length) {
      schema = await readSchema(this.db, this.settings.schema);
      const touches = tablesNamedBy(loaded.migration, schema);
      const maxActive = this.settings.maxActiveMigrations ?? DEFAULT_MAX_ACTIVE_MIGRATIONS;
      refuseStacking(active, { name: loaded.migration.name, touches, createsVersionSchema: createVersionSchema, complete: options.complete === true }, maxActive, loaded.file);
      stackedOn = await stackBase(this.db, active, versionSchema, touches ?? []);
    }
    const planned = await planMigration(
      this.db,
      loaded.migration,
      {
        schema: this.settings.schema,
        stateSchema: this.settings.stateSchema,
        migrationName: loaded.migration.name,
        versionSchema,
        createVersionSchema,
        previousVersionSchema: previous,
        ...(stackedOn ? { stackedOn } : {}),
      },
      loaded.file,
      expressions,
      schema,
    );
    return { ...planned, versionSchema, stackedOn: stackKey(active) };
  }

  /**
   * `migrate --stack`: refuses, changing nothing, pending migrations that could not all be stacked on
   * the active ones, one on the other (see stack.ts). Each start checks again as it goes.
   */
  async refuseStackingAll(pending: LoadedMigration[]): Promise<void> {
    await this.prepareSession();
    await this.requireSchema();
    const active = (await stateSchemaExists(this.db, this.settings.stateSchema)) ? await this.store.allInFlight() : [];
    this.refuseWhileInTransition(active);
    const schema = await readSchema(this.db, this.settings.schema);
    const migrations = pending.map((loaded) => ({ name: loaded.migration.name, touches: tablesNamedBy(loaded.migration, schema), file: loaded.file }));
    refuseStackingAll(active, migrations, this.settings.useVersionSchema !== false, this.settings.maxActiveMigrations ?? DEFAULT_MAX_ACTIVE_MIGRATIONS);
  }

  /** The migrations in flight other than `name`, oldest first (the state schema must exist). */
  private async othersInFlight(name: string): Promise<MigrationRecord[]> {
    return (await this.store.allInFlight()).filter((record) => record.name !== name);
  }

  async start(loaded: LoadedMigration, options: StartOptions = {}): Promise<StartOutcome> {
    await this.prepareSession();
    // Validate before anything is written, even the state schema: a migration that does not fit the
    // schema leaves the database exactly as it was. (A start being resumed is not planned again: the
    // schema is half-changed by then, and its plan is stored.)
    const { name } = loaded.migration;
    const stateExists = await stateSchemaExists(this.db, this.settings.stateSchema);
    const inFlightBefore = stateExists ? await this.store.allInFlight() : [];
    const resuming = inFlightBefore.some((record) => record.name === name);
    const historyBefore = stateExists && !resuming ? (await this.refuseIfApplied(loaded)).at(-1)?.id : undefined;
    const expressions = expressionCheckFor(options);
    const stacking = { complete: options.complete };
    // Another migration in the middle of a run is refused under the lock, which tells a run going on
    // now (busy, with its process) from one that was interrupted.
    const midRun = inFlightBefore.some((record) => record.status !== 'active');
    let planned = resuming || midRun ? undefined : await this.planInSession(loaded, expressions, stacking);
    await initStateSchema(this.db, this.settings.stateSchema);
    return this.exclusively(async () => {
      const all = await this.store.allInFlight();
      const inFlight = all.find((record) => record.name === name);
      let record: MigrationRecord;
      let resumed = false;
      const warnings: string[] = [];
      if (inFlight) {
        if (inFlight.status !== 'starting') {
          throw new TandemError({ kind: 'migration_already_started', name, status: inFlight.status }, {
            file: loaded.file,
            hint: inFlight.status === 'active' ? 'next: tandem complete, or tandem rollback' : whatWorksNow(inFlight.status, inFlight.file),
          });
        }
        if (inFlight.digest !== loaded.digest) {
          throw new TandemError({ kind: 'migration_changed', name }, { file: loaded.file });
        }
        record = inFlight;
        resumed = true;
        this.logger.info({ migration: name, step: record.step, steps: record.plan.start.length }, `resuming start of ${name} at step ${record.step + 1}`);
      } else {
        const applied = await this.refuseIfApplied(loaded);
        // Another process may have applied, completed or rolled back a migration between planning and
        // the lock: plan again.
        if (!planned || applied.at(-1)?.id !== historyBefore || planned.stackedOn !== stackKey(all)) planned = await this.planInSession(loaded, expressions, stacking);
        warnings.push(...planned.warnings);
        for (const warning of warnings) this.logger.warn({ migration: name }, warning);
        record = await this.store.insert({
          name,
          versionSchema: planned.versionSchema,
          parent: applied.at(-1)?.name ?? null,
          digest: loaded.digest,
          migration: loaded.raw,
          file: loaded.file,
          plan: planned.plan,
        });
        this.logger.info({ migration: name, versionSchema: planned.versionSchema, steps: planned.plan.start.length }, `starting ${name}`);
      }

      record = await this.runStart(record, loaded.file);
      if (options.complete) {
        await this.ensureRetirable(record, options.completeOptions ?? {});
        record = await this.completeRecord(record);
      }
      return { record, resumed, warnings, completed: Boolean(options.complete) };
    });
  }

  /**
   * Continues an interrupted start (its backfill, typically) from the stored plan, without the file:
   * what `tandem backfill` does after a crash.
   */
  async resume(): Promise<MigrationRecord> {
    await this.prepareSession();
    await this.requireState();
    // A state schema from an older tandem gets what this one's backfill reads (the pause table).
    await initStateSchema(this.db, this.settings.stateSchema);
    return this.exclusively(async () => {
      const inFlight = await this.store.allInFlight();
      const record = inFlight.find((r) => r.status === 'starting');
      if (!record) {
        const current = inFlight.at(-1);
        throw new TandemError({ kind: 'nothing_to_resume', current: current ? { name: current.name, status: current.status } : undefined });
      }
      this.logger.info({ migration: record.name, step: record.step }, `resuming start of ${record.name} at step ${record.step + 1}`);
      return this.runStart(record, record.file ?? undefined);
    });
  }

  private async runStart(record: MigrationRecord, file: string | undefined): Promise<MigrationRecord> {
    try {
      await this.withReconnect('start', record, async () => this.runSteps(record, 'start', await this.storedStep(record)));
    } catch (error) {
      // Without a session nothing can be undone, and nothing was: the state says where it stopped.
      if (isLostConnection(error)) throw connectionLost('start', record, error, this.settings.reconnect, file);
      if (anotherProcessTookOver(error)) throw error;
      await this.undoFailedStart(record, error);
      throw phaseFailure('start', record, error, file);
    }
    await this.withReconnect('start', record, () => this.store.setStatus(record.id, 'active', { step: 0 }));
    this.logger.info({ migration: record.name, versionSchema: record.versionSchema }, `${record.name} is active: ${versionSchemaReady(record)}`);
    return { ...record, status: 'active', step: 0 };
  }

  async complete(options: CompleteOptions = {}): Promise<MigrationRecord> {
    await this.prepareSession();
    await this.requireState();
    return this.exclusively(async () => {
      // Versions retire oldest first: complete works on the oldest migration in flight.
      const [record, ...newer] = await this.store.allInFlight();
      if (!record) throw new TandemError({ kind: 'nothing_active', schema: this.settings.schema }, { hint: 'start one with tandem start FILE' });
      // A stacked migration that is being started or rolled back copied (or drops) views of this
      // one's tables by their names of now: they must not change under it.
      this.refuseWhileInTransition(newer);
      if (record.status === 'starting') {
        throw new TandemError({ kind: 'start_unfinished', name: record.name, step: record.step + 1 });
      }
      if (record.status === 'rolling_back') {
        throw new TandemError({ kind: 'rollback_unfinished', name: record.name }, { hint: 'run tandem rollback again to finish' });
      }
      if (record.status === 'active') await this.ensureRetirable(record, options);
      return this.completeRecord(record.status === 'active' ? await this.fitComplete(record, newer) : record);
    });
  }

  async rollback(): Promise<MigrationRecord> {
    await this.prepareSession();
    await this.requireState();
    return this.exclusively(async () => {
      // Rollback undoes the newest migration in flight first: the ones stacked on it build on it.
      const inFlight = await this.store.allInFlight();
      let record = inFlight.at(-1);
      if (!record) throw new TandemError({ kind: 'nothing_active', schema: this.settings.schema }, { hint: 'there is nothing to roll back' });
      this.refuseWhileInTransition(inFlight.slice(0, -1));
      if (inFlight.length > 1) {
        this.logger.info({ migration: record.name, active: inFlight.map((r) => r.name) }, `rolling back ${record.name}, the newest of the active migrations`);
      }
      if (record.status === 'completing') {
        const firstDestructive = record.plan.complete.findIndex((s) => s.kind === 'sql' && s.destructive);
        if (firstDestructive >= 0 && record.step > firstDestructive) {
          throw new TandemError({ kind: 'complete_partly_done', name: record.name, step: record.plan.complete[firstDestructive]!.description });
        }
      }
      const from = record.status === 'rolling_back' ? record.step : 0;
      if (record.status !== 'rolling_back') record = await this.fitRollback(record, inFlight.slice(0, -1));
      await this.store.setStatus(record.id, 'rolling_back', { step: from });
      try {
        await this.withReconnect('rollback', record, async () => this.runSteps(record, 'rollback', await this.storedStep(record)));
      } catch (error) {
        if (isLostConnection(error)) throw connectionLost('rollback', record, error, this.settings.reconnect);
        throw phaseFailure('rollback', record, error);
      }
      await this.withReconnect('rollback', record, () => this.store.setStatus(record.id, 'rolled_back'));
      this.logger.info({ migration: record.name }, `${record.name} rolled back`);
      return { ...record, status: 'rolled_back' };
    });
  }

  /** The complete plan of the oldest active migration fitted to the ones stacked on it (see restack.ts), stored before the first step runs. */
  private async fitComplete(record: MigrationRecord, newer: MigrationRecord[]): Promise<MigrationRecord> {
    if (!newer.length && !record.plan.complete.some((s) => s.kind === 'sql' && s.deferredTo !== undefined)) return record;
    const plan = fitComplete(record, newer, this.where());
    await this.store.setPlan(record.id, plan);
    for (const heir of new Set(plan.complete.flatMap((s) => (s.kind === 'sql' && s.deferredTo !== undefined ? [s.deferredTo] : [])))) {
      const name = newer.find((r) => r.id === heir)?.name;
      this.logger.info({ migration: record.name, stackedOn: name }, `${record.name} leaves the final names on the tables it shares with ${name} to it`);
    }
    return { ...record, plan };
  }

  /** The rollback plan of the newest active migration fitted to the ones under it (see restack.ts), stored before the first step runs. */
  private async fitRollback(record: MigrationRecord, older: MigrationRecord[]): Promise<MigrationRecord> {
    const plan = fitRollback(record, older, await this.store.leftTo(record.id), this.where());
    await this.store.setPlan(record.id, plan);
    return { ...record, plan };
  }

  private where(): { schema: string; stateSchema: string } {
    return { schema: this.settings.schema, stateSchema: this.settings.stateSchema };
  }

  /** Refuses to go on while another migration of the schema is half-way through a run. */
  private refuseWhileInTransition(others: MigrationRecord[]): void {
    const busy = others.find((record) => record.status !== 'active');
    if (busy) throw new TandemError({ kind: 'migration_in_flight', name: busy.name, status: busy.status }, { hint: whatWorksNow(busy.status, busy.file) });
  }

  /** Refuses to retire a version that clients still use, or waits for them to leave (see drain.ts). */
  private async ensureRetirable(record: MigrationRecord, options: CompleteOptions): Promise<void> {
    const versionSchema = record.plan.retires;
    if (!versionSchema || options.force) return;
    await awaitRetirable(this.db, this.settings.stateSchema, this.settings.schema, versionSchema, options, this.logger);
  }

  private async completeRecord(record: MigrationRecord): Promise<MigrationRecord> {
    const from = record.status === 'completing' ? record.step : 0;
    await this.store.setStatus(record.id, 'completing', { step: from });
    this.logger.info({ migration: record.name }, `completing ${record.name}`);
    try {
      await this.withReconnect('complete', record, async () => this.runSteps(record, 'complete', await this.storedStep(record)));
    } catch (error) {
      if (isLostConnection(error)) throw connectionLost('complete', record, error, this.settings.reconnect);
      if (anotherProcessTookOver(error)) throw error;
      const done = await this.store.byId(record.id);
      const firstDestructive = record.plan.complete.findIndex((s) => s.kind === 'sql' && s.destructive);
      const undamaged = firstDestructive < 0 || (done?.step ?? 0) <= firstDestructive;
      if (undamaged) await this.store.setStatus(record.id, 'active', { step: 0, error: formatError(error) });
      throw phaseFailure('complete', record, error, undefined, undamaged);
    }
    await this.withReconnect('complete', record, async () => {
      await this.verifyComplete(record);
      await this.store.setStatus(record.id, 'complete', { step: record.plan.complete.length });
    });
    this.logger.info({ migration: record.name, versionSchema: record.versionSchema }, `${record.name} is complete`);
    return { ...record, status: 'complete' };
  }

  /**
   * Every object the migration created must be there after its last step (plan.expect). When one is
   * not, the migration stays "being completed" with every step done: once the object is back (or the
   * cause fixed), tandem complete checks again and finishes.
   */
  private async verifyComplete(record: MigrationRecord): Promise<void> {
    const missing = await missingObjects(this.db, this.settings.schema, record.plan.expect ?? []);
    if (!missing.length) return;
    const error = new TandemError(
      { kind: 'complete_check_failed', name: record.name, missing: missing.map(describeMissing) },
      { file: record.file ?? undefined, operation: missing[0]!.object.origin.operation, kind: missing[0]!.object.origin.kind },
    );
    await this.store.setStatus(record.id, 'completing', { error: formatError(error) });
    throw error;
  }

  /**
   * After a failed start: undo what it did, so the database is as it was. Steps that start never
   * reached are not undone (the failed step itself was rolled back by its own transaction, unless it
   * could not run in one).
   */
  private async undoFailedStart(record: MigrationRecord, cause: unknown): Promise<void> {
    this.logger.error({ migration: record.name, error: formatError(cause) }, `start of ${record.name} failed; rolling back what it did`);
    const failedAt = cause instanceof StepFailure ? cause.index : record.plan.start.length;
    const failed = record.plan.start[failedAt];
    const reached = new Set(
      record.plan.start
        .slice(0, failedAt + (failed && !(failed.kind === 'sql' && failed.transactional) ? 1 : 0))
        .map((s) => s.id),
    );
    const needed = (step: Step) => step.kind !== 'sql' || !step.undoes || step.undoes.some((id) => reached.has(id));
    const undo = { ...record, plan: { ...record.plan, rollback: record.plan.rollback.filter(needed) } };
    await this.store.setStatus(record.id, 'rolling_back', { step: 0, error: formatError(cause) });
    try {
      await this.withReconnect('rollback', record, async () => this.runSteps(undo, 'rollback', await this.storedStep(record)));
      await this.withReconnect('rollback', record, () => this.store.setStatus(record.id, 'rolled_back', { error: formatError(cause) }));
    } catch (rollbackError) {
      if (isLostConnection(rollbackError)) throw connectionLost('rollback', record, rollbackError, this.settings.reconnect);
      throw phaseFailure('rollback', record, rollbackError);
    }
  }

  private async runSteps(record: MigrationRecord, phase: Phase, from: number): Promise<void> {
    const steps = record.plan[phase];
    for (let index = from; index < steps.length; index++) {
      const step = steps[index]!;
      if (step.kind === 'sql' && step.deferredTo !== undefined) {
        // Left to a migration stacked on the table (see restack.ts): only its progress is recorded.
        await this.store.setStep(record.id, index + 1);
        continue;
      }
      const started = Date.now();
      this.logger.debug({ migration: record.name, phase, step: index + 1, of: steps.length, description: step.description }, step.description);
      try {
        await this.runStep(record, step, (db) => this.store.setStep(record.id, index + 1, db));
      } catch (error) {
        throw new StepFailure(phase, index, steps.length, step, error);
      }
      this.logger.info({ migration: record.name, phase, step: index + 1, of: steps.length, ms: Date.now() - started }, step.description);
      crashPointReached(phase, index + 1);
    }
  }

  private async runStep(record: MigrationRecord, step: Step, markDone: (db: pg.Client) => Promise<void>): Promise<void> {
    switch (step.kind) {
      case 'sql':
        await this.executor.run(step, markDone);
        return;
      case 'backfill': {
        const throttle = new Throttle(this.settings.throttle ?? {}, this.settings.stateSchema, this.settings.schema, this.logger);
        try {
          await new Backfill(this.executor, this.settings.stateSchema, record.id, this.settings.schema, step, {
            batchSize: this.settings.backfillBatchSize,
            batchTimeMs: this.settings.backfillBatchTimeMs,
            batchDelayMs: this.settings.backfillBatchDelayMs,
            stallTimeoutMs: this.settings.stallTimeoutMs,
            throttle,
            logger: this.logger,
            metrics: this.settings.metrics,
            onProgress: this.settings.onBackfillProgress,
          }).run();
        } finally {
          await throttle.close();
        }
        await markDone(this.db);
        return;
      }
      case 'await_proxies':
        await awaitProxies(this.db, this.settings.stateSchema, this.settings.schema, DEFAULT_STALE_AFTER_MS, this.logger);
        await markDone(this.db);
        return;
      case 'live_views': {
        const model = new SchemaModel(await readSchema(this.db, this.settings.schema));
        await this.executor.run(
          {
            kind: 'sql',
            description: step.description,
            statements: createVersionSchemaSql(model, step.versionSchema, { stateSchema: this.settings.stateSchema, migration: record.name }),
            transactional: true,
          },
          markDone,
        );
        return;
      }
    }
  }

  /** The version schema this migration creates: `version_schema`, else `<schema>_<name>`, as pgroll names it. */
  private versionSchemaOf(loaded: LoadedMigration): string {
    const name = versionSchemaName(loaded.migration, this.settings.schema);
    if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
      throw new TandemError({ kind: 'version_schema_too_long', versionSchema: name }, { file: loaded.file, field: 'version_schema' });
    }
    return name;
  }

  /**
   * A version schema is created by start and dropped by complete and rollback, so it must be a name
   * that nothing else uses: not a schema that exists (whatever is in it would be at stake), not the
   * migrated schema, the state schema or a system schema.
   */
  private async refuseVersionSchema(versionSchema: string, loaded: LoadedMigration): Promise<void> {
    const fromFile = loaded.migration.versionSchema !== undefined;
    const refuse = (conflict: VersionSchemaConflict) =>
      new TandemError({ kind: 'version_schema_taken', versionSchema, conflict, fromFile }, { file: loaded.file, field: fromFile ? 'version_schema' : 'name' });
    if (versionSchema === this.settings.schema) throw refuse({ with: 'migrated_schema' });
    if (versionSchema === this.settings.stateSchema) throw refuse({ with: 'state_schema' });
    if (versionSchema.startsWith('pg_') || versionSchema === 'information_schema') throw refuse({ with: 'system_schema' });
    const { rows } = await this.db.query<{ owner: string }>(
      `SELECT pg_catalog.pg_get_userbyid(nspowner) AS owner FROM pg_catalog.pg_namespace WHERE nspname = $1`,
      [versionSchema],
    );
    if (!rows.length) return;
    const live = (await listVersions(this.db, this.settings.stateSchema, this.settings.schema)).find((v) => v.versionSchema === versionSchema);
    if (live) throw refuse({ with: 'live_version', migration: live.migration });
    throw refuse({ with: 'existing_schema', owner: rows[0]!.owner });
  }

  private async previousVersionSchema(): Promise<string | null> {
    const versions = await listVersions(this.db, this.settings.stateSchema, this.settings.schema);
    return versions[0]?.versionSchema ?? null;
  }

  private async requireSchema(): Promise<void> {
    const { rows } = await this.db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.settings.schema]);
    if (!rows.length) {
      throw new TandemError({ kind: 'schema_unknown', schema: this.settings.schema });
    }
  }

  /** Session settings every run needs. */
  private async prepareSession(): Promise<void> {
    // A role-level statement_timeout would cut a long CREATE INDEX CONCURRENTLY or backfill batch short.
    // One round trip.
    await this.db.query(
      [
        `SET statement_timeout = 0`,
        `SET lock_timeout = ${this.settings.lockTimeoutMs}`,
        // The backfill evaluates the migration's expressions in this session, and the DDL binds the
        // names in its defaults and checks here: never through whatever a caller's search_path
        // ("$user", a schema someone else can create in) would put in front of pg_catalog.
        `SET search_path = ${fixedSearchPath(this.settings.schema)}`,
        // A killed tandem must not leave its server session holding the schema's lock until its
        // current batch ends: from PostgreSQL 14 the backend checks for a vanished client while a
        // statement runs; keepalives find a peer that went away without a word.
        `SELECT pg_catalog.set_config('client_connection_check_interval', '2000', false)
          WHERE pg_catalog.current_setting('server_version_num')::int >= 140000`,
        `SET tcp_keepalives_idle = 10`,
        `SET tcp_keepalives_interval = 5`,
        `SET tcp_keepalives_count = 3`,
        KEEP_OUT_OF_PGROLL_HISTORY,
      ].join(';\n'),
    );
  }

  private async requireState(): Promise<void> {
    if (!(await stateSchemaExists(this.db, this.settings.stateSchema))) {
      throw new TandemError({ kind: 'nothing_active', schema: this.settings.schema, fresh: true });
    }
  }

  /** The applied migrations, or an error when `loaded` is one of them. */
  private async refuseIfApplied(loaded: LoadedMigration): Promise<MigrationRecord[]> {
    const applied = await this.store.applied();
    if (applied.some((m) => m.name === loaded.migration.name)) {
      throw new TandemError({ kind: 'migration_applied', name: loaded.migration.name }, { file: loaded.file });
    }
    return applied;
  }

  /** One tandem process at a time per schema (see state/migration-lock.ts). */
  private async exclusively<T>(body: () => Promise<T>): Promise<T> {
    await this.lock();
    try {
      return await body();
    } finally {
      await releaseMigrationLock(this.db, this.settings.stateSchema, this.settings.schema);
    }
  }

  private async lock(): Promise<void> {
    await takeMigrationLock(this.db, this.settings.stateSchema, this.settings.schema);
  }

  /** The step the stored record says comes next: where a run begins, and goes on after a reconnect. */
  private async storedStep(record: MigrationRecord): Promise<number> {
    const stored = await this.store.byId(record.id);
    if (!stored || !IN_FLIGHT_STATUSES.includes(stored.status)) {
      throw new TandemError({ kind: 'state_changed', name: record.name });
    }
    return stored.step;
  }

  /**
   * Runs `body`; when the session is lost under it and reconnecting is configured, opens a new one
   * (with backoff, each attempt logged), takes the lock again and runs `body` again, which reads from
   * the stored state where to go on. Gives up after the configured time with the lost-connection error.
   */
  private async withReconnect<T>(phase: Phase, record: MigrationRecord, body: () => Promise<T>): Promise<T> {
    const reconnect = this.settings.reconnect;
    let deadline: number | undefined;
    for (;;) {
      try {
        return await body();
      } catch (error) {
        if (!reconnect || !isLostConnection(error)) throw error;
        deadline ??= Date.now() + reconnect.timeoutMs;
        this.logger.warn(
          { migration: record.name, phase, error: formatError(rootCause(error)) },
          `lost the connection to PostgreSQL during ${phase} of ${record.name}; reconnecting for up to ${Math.round(reconnect.timeoutMs / 1000)} s`,
        );
        await this.reconnect(phase, record, deadline, error);
      }
    }
  }

  private async reconnect(phase: Phase, record: MigrationRecord, deadline: number, lost: unknown): Promise<void> {
    const { connect } = this.settings.reconnect!;
    await retry(
      async (attempt) => {
        const db = await connect();
        const old = this.db;
        this.use(db);
        old.end().catch(() => {});
        await this.prepareSession();
        await this.lock();
        this.logger.info({ migration: record.name, phase, attempt }, `reconnected to PostgreSQL; ${phase} of ${record.name} goes on from its last recorded step`);
      },
      {
        attempts: Infinity,
        baseDelayMs: 200,
        maxDelayMs: 5000,
        deadline,
        waitBeforeFirstTry: true,
        // Another process holds the lock now: what this run did is that process's to go on with.
        retryOn: (error) => !(error instanceof TandemError && error.code === 'busy'),
        onRetry: ({ error, attempt }) => this.logger.warn({ migration: record.name, phase, attempt, error: formatError(error) }, `reconnect attempt ${attempt} failed`),
        giveUp: () => lost,
      },
    );
  }
}

/** The in-flight migrations a plan was stacked on, as they were: planned again when they change. */
function stackKey(records: MigrationRecord[]): string {
  return records.map((r) => `${r.id}:${r.status}`).join(',');
}
