/**
 * Collects what each operation asks for and assembles the migration's plan in safe order:
 * - start: expand (new columns, tables) → sync triggers → constraints (NOT VALID, indexes built
 *   concurrently) → backfill → version schema;
 * - complete: validate → retire the old version (its schema, the triggers) → contract (drops) →
 *   finish (NOT NULL, constraints) → rename columns and constraints, then tables, into place;
 * - rollback: the new version schema and triggers go first, then each operation's undo, last first.
 */
import { isNotNullCheck, lockTargetOf, renameColumnSql, renameConstraint, renameIndex, renameTable } from './ddl.js';
import { inboundForeignKeysLeft, moveConstraint, movePhysical, physicalColumnTaken, type ModelColumn, type ModelTable, type SchemaModel, type StackedVersion, type VersionTable } from './model.js';
import { ShadowTable, shadowName, type NewConstraint, type ShadowColumn } from './shadow.js';
import {
  COMPLETE_PHASES,
  START_PHASES,
  sqlStep,
  type CompletePhase,
  type SqlStep,
  type ExpectedObject,
  type PendingIndex,
  type Plan,
  type StartPhase,
  type Step,
  type StepOrigin,
} from './steps.js';
import { derivedIdent, qualified, quoteIdent, quoteLiteral } from './quote.js';
import { TandemError } from '../errors/index.js';
import {
  backfillAssignments,
  createSyncTriggerSql,
  dropSyncTriggerSql,
  expressionProbeSql,
  SYNC_TRIGGER_NAME,
  resetSyncTriggersSql,
  restackSyncSql,
  createSyncFunctionSql,
  syncFunctionName,
  type SyncExpression,
  type SyncLayer,
  type SyncRule,
  type SyncTrigger,
} from './triggers.js';
import { createVersionSchemaSql, dropVersionSchemaSql, type BorrowedViews, type VersionSchemaOwner } from './views.js';
import { resolveExpectations, type PendingExpectation } from './expectations.js';

export interface MigrationContext {
  /** The schema being migrated. */
  schema: string;
  stateSchema: string;
  migrationName: string;
  /** This migration's version schema (its name: the sync triggers tell its writers by it even when it is not created). */
  versionSchema: string;
  /** false: start creates no version schema (pgroll's --use-version-schema=false); the default is true. */
  createVersionSchema?: boolean;
  /** The version schema the old app uses, if an earlier migration made one. */
  previousVersionSchema: string | null;
  /** The active migrations this one is stacked on, when it is (see engine/stack.ts). */
  stackedOn?: StackBase;
}

/** What a migration stacked on active ones builds on. */
export interface StackBase {
  /**
   * The tables the active migrations name: this version sees them as the latest version does (their
   * views are copied from its schema, `views`), not as the catalog shows them mid-migration.
   */
  tables: string[];
  /** Statements that create those views in this migration's version schema. */
  views: string[];
  /**
   * The active migrations' sync triggers: each table, the version schemas that write it as the new
   * version now, and, when every migration with rules on it stored them, the table's layers (one per
   * migration, oldest first), from which its sync function is made anew.
   */
  triggers: { table: string; newVersionSchemas: string[]; layers?: SyncLayer[] }[];
  /**
   * The active migrations' versions of the tables they touch, oldest first: the model starts from
   * them, so a migration may be stacked on a table an active one changes (see SchemaModel.stackOn).
   */
  versions: (StackedVersion & { migration: string })[];
  /** The tables this migration touches that active migrations touch too: planned on their versions, not borrowed. */
  shared: string[];
}

/** A query that must plan without error before the migration may touch the database. */
export interface Probe {
  sql: string;
  origin: StepOrigin;
}

/** Questions about SQL text that only the server can answer, asked while planning. */
export interface Inspector {
  /** The volatility of an expression: whether it gives the same value for every row it fills. */
  volatility(expression: string, type: string): Promise<'immutable' | 'stable' | 'volatile'>;
}

export class Planner {
  readonly context: MigrationContext;
  readonly model: SchemaModel;
  readonly inspector: Inspector;
  private readonly startSteps = new Map<StartPhase, Step[]>(START_PHASES.map((p) => [p, []]));
  private readonly completeSteps = new Map<CompletePhase, Step[]>(COMPLETE_PHASES.map((p) => [p, []]));
  private readonly rollbackByOperation: Step[][] = [];
  private readonly syncRules = new Map<string, SyncRule[]>();
  private readonly backfills = new Map<string, { touchColumn: string; origin: StepOrigin }>();
  private readonly shadowTables = new Map<ModelTable, ShadowTable>();
  /** Indexes built under temporary names that take their final names at complete. */
  private readonly indexRenames: { from: string; to: string }[] = [];
  /** Indexes built under temporary names that become constraints at complete. */
  private readonly indexAttaches: PendingIndex[] = [];
  readonly probes: Probe[] = [];
  /** Set by raw SQL: the version schema must be built from what the database looks like after it. */
  viewsFromLiveSchema = false;
  readonly warnings: string[] = [];
  /** What the migration creates, checked after complete (see expectations.ts). */
  private readonly expectations: PendingExpectation[] = [];
  /** Work that needs the finished model (final physical names), done first thing in build(). */
  private readonly atBuild: (() => void)[] = [];
  /** The operation being planned: its steps and errors carry this. */
  origin: StepOrigin = { operation: 0, kind: '' };

  constructor(model: SchemaModel, context: MigrationContext, inspector: Inspector) {
    this.model = model;
    this.context = context;
    this.inspector = inspector;
  }

  beginOperation(operation: number, kind: string): void {
    this.origin = { operation, kind };
    this.rollbackByOperation[operation] = [];
  }

  start(phase: StartPhase, step: Step): void {
    this.startSteps.get(phase)!.push(this.stamp(step));
  }

  complete(phase: CompletePhase, step: Step): void {
    this.completeSteps.get(phase)!.push(this.stamp(step));
  }

  /** Undo steps of the current operation, in the order they should run. */
  rollback(step: Step): void {
    this.rollbackByOperation[this.origin.operation]!.push(this.stamp(step));
  }

  /** The shadow of `column`, created on first use: the model column then points at it. */
  shadowColumn(table: ModelTable, column: ModelColumn): ShadowColumn {
    let shadows = this.shadowTables.get(table);
    if (!shadows) {
      shadows = new ShadowTable(this.context.schema, table, this.model);
      this.shadowTables.set(table, shadows);
    }
    const existing = shadows.find(column);
    if (existing) return existing;
    if (!column.original) throw new Error(`column ${column.name} has no original column to shadow`);
    let shadow = shadowName(column.original);
    while (physicalColumnTaken(table, shadow, shadows.columns.map((s) => s.shadow))) shadow = derivedIdent('_', shadow);
    const state: ShadowColumn = {
      column,
      original: column.original,
      shadow,
      up: [],
      down: [],
      origin: this.origin,
    };
    shadows.columns.push(state);
    movePhysical(table, column, shadow);
    return state;
  }

  /**
   * Takes back the shadow of a column that a later operation of the same migration drops (a
   * constraint dropped, a type changed, then the column itself dropped): a shadow would be swapped
   * into place at complete under the name of the column being dropped. Without it the old column
   * stays as it is until complete drops it, with whatever constraints it has.
   */
  unshadowColumn(table: ModelTable, column: ModelColumn): void {
    const shadows = this.shadowTables.get(table);
    const state = shadows?.find(column);
    if (!shadows || !state) return;
    shadows.columns.splice(shadows.columns.indexOf(state), 1);
    shadows.added.splice(0, shadows.added.length, ...shadows.added.filter((added) => !mentions(added, state.shadow)));
    movePhysical(table, column, state.original);
    if (!shadows.columns.length) this.shadowTables.delete(table);
  }

  shadowTable(table: ModelTable): ShadowTable | undefined {
    return this.shadowTables.get(table);
  }

  /** Keeps a pair of columns in step while both versions write (see triggers.ts). */
  sync(table: string, rule: SyncRule): void {
    const rules = this.syncRules.get(table) ?? [];
    rules.push({ ...rule, origin: rule.origin ?? this.origin });
    this.syncRules.set(table, rules);
    for (const expression of [...(rule.up ?? []), ...(rule.down ?? [])]) {
      this.probes.push({ sql: expressionProbeSql(expression.sql, expression.names, expression.resultType), origin: expression.origin });
    }
  }

  /** An `up` or `down` expression of the current operation. */
  expression(sql: string, names: SyncExpression['names'], resultType: string, field: string): SyncExpression {
    return { sql, names, resultType, origin: { ...this.origin, field } };
  }

  /** The rule that fills `newColumn` of `table`, if an operation asked for one. */
  syncRuleFor(table: string, newColumn: string): SyncRule | undefined {
    return this.syncRules.get(table)?.find((r) => r.newColumn === newColumn);
  }

  /** Checks an expression with the server before anything runs (sync() does this for its rules). */
  probe(expression: SyncExpression): void {
    this.probes.push({ sql: expressionProbeSql(expression.sql, expression.names, expression.resultType), origin: expression.origin });
  }

  /** An index built under a temporary name takes `to` at complete, with the other renames. */
  renameIndex(from: string, to: string): void {
    this.indexRenames.push({ from, to });
  }

  /** Runs `work` once every operation is planned, when physical names are final. */
  whenPlanned(work: () => void): void {
    this.atBuild.push(work);
  }

  /** Something this operation creates that must exist, under its final name, after complete. */
  expect(expectation: Omit<PendingExpectation, 'origin'>): void {
    this.expectations.push({ ...expectation, origin: this.origin });
  }

  /** What complete must leave behind, read from the finished model (call after build). */
  expected(): ExpectedObject[] {
    return resolveExpectations(this.model, this.expectations);
  }

  /**
   * drop_table of a table that existed: the new version never sees it again, so whatever the
   * operations before planned for it (shadows, triggers, backfill, constraints, contract steps) would
   * only run against a table that complete drops; none of it is kept.
   */
  forgetTable(table: ModelTable): void {
    const target = `${this.context.schema}.${table.physical}`;
    const keep = (step: Step) => step.kind === 'backfill' ? step.table !== table.physical : step.kind !== 'sql' || step.lockTarget !== target;
    this.shadowTables.delete(table);
    this.syncRules.delete(table.physical);
    this.backfills.delete(table.physical);
    for (const [phase, steps] of this.startSteps) this.startSteps.set(phase, steps.filter(keep));
    for (const [phase, steps] of this.completeSteps) this.completeSteps.set(phase, steps.filter(keep));
    this.rollbackByOperation.forEach((steps, operation) => {
      if (steps) this.rollbackByOperation[operation] = steps.filter(keep);
    });
  }

  /** Existing rows of `table` need the sync triggers run on them once. */
  backfill(table: string, touchColumn: string): void {
    if (!this.backfills.has(table)) this.backfills.set(table, { touchColumn, origin: this.origin });
  }

  warn(message: string): void {
    this.warnings.push(`operation ${this.origin.operation} (${this.origin.kind}): ${message}`);
  }

  private stamp<S extends Step>(step: S): S {
    return step.origin ? step : { ...step, origin: this.origin };
  }

  syncTriggers(): SyncTrigger[] {
    return [...this.syncRules.entries()].map(([table, rules]) => ({ ...this.syncTriggerOf(table), versionSchema: this.context.versionSchema, rules }));
  }

  /** Where the sync trigger of `table` and its function live (the same for every migration). */
  private syncTriggerOf(table: string) {
    return { schema: this.context.schema, table, functionSchema: this.context.stateSchema, functionName: syncFunctionName(this.context.schema, table), triggerName: SYNC_TRIGGER_NAME };
  }

  /**
   * A migration stacked on a table an active one changes builds on that one's version of the table,
   * shadows of its shadows included (the sync function chains the layers' expressions), but may not
   * change again what it has not finished in ways the new shadow cannot carry on (see `carried`): a
   * column that such a constraint or index of it under a temporary name involves cannot get a shadow
   * of its own, and a constraint it will rename at complete cannot be dropped or renamed.
   */
  private refuseUnfinished(): void {
    const base = this.context.stackedOn;
    if (!base) return;
    const ownerOf = (physical: string) => [...base.versions].reverse().find((v) => v.tables.some((t) => t.physical === physical));
    for (const shadows of this.shadowTables.values()) {
      const table = shadows.table;
      const owner = ownerOf(table.physical);
      if (!owner) continue;
      const temporary = (name: string) => name.startsWith('_tandem_');
      // What the new shadow can carry on: a NOT NULL in waiting, a check or foreign key under a
      // temporary name (recreated on it, renamed at complete), an index in waiting whose fate the
      // active migration kept (not a primary key, nor a unique constraint other tables' keys point at).
      const carried = (constraint: { name: string; type: string }) => isNotNullCheck(constraint.name) || constraint.type === 'check' || constraint.type === 'foreign_key';
      const inbound = inboundForeignKeysLeft(this.model, table).length > 0;
      const carriedIndex = (index: string) => {
        const pending = this.model.pendingIndexes.get(index);
        return pending !== undefined && pending.constraint?.kind !== 'primary_key' && !(pending.constraint && inbound);
      };
      for (const shadow of shadows.columns) {
        const pendingObject =
          table.info?.constraints.some((c) => temporary(c.name) && !carried(c) && c.columns.includes(shadow.original)) ||
          table.info?.indexes.some((i) => temporary(i.name) && !carriedIndex(i.name) && i.columns.includes(shadow.original));
        if (pendingObject) {
          throw new TandemError({ kind: 'stack_unfinished', name: owner.migration, table: table.name, object: shadow.column.name, objectKind: 'column' }, { operation: shadow.origin.operation, kind: shadow.origin.kind });
        }
      }
    }
    for (const version of base.versions) {
      for (const before of version.tables) {
        if (!base.shared.includes(before.name) && !base.shared.includes(before.physical)) continue;
        const table = this.model.visibleTables().find((t) => t.physical === before.physical);
        for (const constraint of before.constraints.filter((c) => c.physical !== c.name)) {
          if (!table || table.constraints.some((c) => c.physical === constraint.physical && c.name === constraint.name)) continue;
          throw new TandemError({ kind: 'stack_unfinished', name: ownerOf(before.physical)!.migration, table: before.name, object: constraint.name, objectKind: 'constraint' });
        }
      }
    }
  }

  /** Turns each table's shadow columns into steps, in the phases where they belong. */
  private addShadowSteps(): void {
    for (const shadows of this.shadowTables.values()) {
      const table = shadows.table;
      const steps = shadows.steps((kind, name) => derivedIdent(`_tandem_${kind}_`, name));
      for (const { from, to } of steps.constraintMoves) moveConstraint(table, from, to);
      const origin = shadows.columns[0]!.origin;
      const add = <T>(list: T[], item: T) => list.push(item);
      for (const step of steps.expand) add(this.startSteps.get('expand')!, step);
      for (const rule of steps.rules) this.sync(table.physical, rule);
      for (const step of steps.constrain) add(this.startSteps.get('constrain')!, step);
      this.backfills.set(table.physical, { touchColumn: steps.touchColumn, origin });
      for (const step of steps.indexes) add(this.startSteps.get('backfill')!, step);
      for (const step of steps.validate) add(this.completeSteps.get('validate')!, step);
      add(this.completeSteps.get('contract')!, steps.swap);
      for (const step of steps.afterSwap) add(this.completeSteps.get('finish')!, step);
      this.indexRenames.push(...steps.indexRenames);
      this.indexAttaches.push(...steps.attaches);
      for (const step of steps.rollback) {
        const operation = step.origin?.operation ?? origin.operation;
        (this.rollbackByOperation[operation] ??= []).push(step);
      }
    }
  }

  /**
   * Renames that give every column, constraint and table its final name at complete, read from the
   * finished model so that renames, temporary names and shadow columns all land the same way. A rename
   * onto a name another pending rename still holds waits for it; a cycle goes through a temporary name.
   */
  private renameSteps(): Step[] {
    const steps: Step[] = [];
    for (const table of this.model.visibleTables()) {
      const ddlTable = { schema: this.context.schema, name: table.physical };
      const columns = table.columns.map((c) => ({ from: c.physical, to: c.name }));
      for (const { from, to } of orderRenames(columns, (n) => derivedIdent('_tandem_tmp_', n))) {
        const statements = [renameColumnSql(ddlTable, from, to)];
        if (this.model.atLeast(18)) statements.push(renameNotNullConstraintSql(this.context.schema, table.physical, from, to));
        steps.push(sqlStep(`rename column ${table.physical}.${from} to ${to}`, statements, { lockTarget: lockTargetOf(ddlTable), renameOn: table.physical }));
      }
      const constraints = table.constraints.map((c) => ({ from: c.physical, to: c.name }));
      for (const { from, to } of orderRenames(constraints, (n) => derivedIdent('_tandem_tmp_', n))) {
        steps.push({ ...renameConstraint(ddlTable, from, to), renameOn: table.physical });
      }
    }
    for (const { from, to } of this.indexRenames) steps.push(renameIndex(this.context.schema, from, to));
    return steps;
  }

  private renameTableSteps(): Step[] {
    const tables = this.model.visibleTables().map((t) => ({ from: t.physical, to: t.name }));
    // A table renamed through a temporary name is renamed on its physical name's account both times.
    const physicalOf = new Map(tables.map((t) => [t.from, t.from]));
    return orderRenames(tables, (n) => derivedIdent('_tandem_tmp_', n)).map(({ from, to }) => {
      const renameOn = physicalOf.get(from)!;
      physicalOf.set(to, renameOn);
      return { ...renameTable({ schema: this.context.schema, name: from }, to), renameOn };
    });
  }

  /** The whole plan, in execution order. */
  build(): Plan {
    const { schema, versionSchema, previousVersionSchema, createVersionSchema = true } = this.context;
    for (const work of this.atBuild.splice(0)) work();
    this.refuseUnfinished();
    this.addShadowSteps();
    const triggers = this.syncTriggers();
    const at = (phase: StartPhase) => this.startSteps.get(phase)!;
    const lockTarget = (table: string) => `${schema}.${table}`;

    // Tables whose sync function active migrations already have rules in: this migration's rules go
    // on top of theirs, in one function, and undoing that gives them back theirs.
    const layersBelow = new Map((this.context.stackedOn?.triggers ?? []).filter((t) => t.layers).map((t) => [t.table, t.layers!]));
    const ownLayer = (t: SyncTrigger): SyncLayer => ({ versionSchemas: [versionSchema], rules: t.rules });
    const unnumbered: Step[] = [
      ...at('expand'),
      ...triggers.map((t) => {
        const below = layersBelow.get(t.table);
        return sqlStep(`install sync trigger on ${t.table}`, below ? createSyncFunctionSql(t, [...below, ownLayer(t)]) : createSyncTriggerSql(t), {
          lockTarget: lockTarget(t.table),
          origin: t.rules[0]!.origin,
        });
      }),
      ...at('constrain'),
      ...[...this.backfills.entries()].map(([table, { touchColumn, origin }]): Step => {
        const assignments = backfillAssignments(this.syncRules.get(table) ?? []);
        return { kind: 'backfill', description: `backfill ${table}`, table, touchColumn, ...(assignments ? { assignments } : {}), origin };
      }),
      ...at('backfill'),
      ...(createVersionSchema ? [this.versionSchemaStep()] : []),
      ...at('views'),
    ];
    // A stacked migration's version sees the active migrations' tables as the latest version does, so
    // their triggers must take its writes as the new version's, from before its views exist.
    const ownTables = new Set(triggers.map((t) => t.table));
    const stackTriggers = (this.context.stackedOn?.triggers ?? []).filter((t) => !ownTables.has(t.table)).map((t) => ({ ...t, trigger: this.syncTriggerOf(t.table) }));
    const versionStepAt = unnumbered.findIndex((s) => s.description === `create version schema ${versionSchema}`);
    unnumbered.splice(
      versionStepAt < 0 ? unnumbered.length : versionStepAt,
      0,
      ...stackTriggers.map(({ table, trigger, newVersionSchemas, layers }) =>
        sqlStep(
          `let the sync trigger on ${table} take writes through ${versionSchema} as the new version's`,
          layers ? restackSyncSql(trigger, withWriters(layers, versionSchema)) : resetSyncTriggersSql(trigger, [...newVersionSchemas, versionSchema]),
          { lockTarget: lockTarget(table) },
        ),
      ),
    );
    const start = unnumbered.map((step, id): Step => ({ ...step, id }));
    const viewsStep = start.find((s) => s.description === `create version schema ${versionSchema}`);
    const triggerStep = (table: string) => start.find((s) => s.description === `install sync trigger on ${table}`)!;
    // Grouped once: looking them up per operation would make planning quadratic in the operations.
    const startIds = new Map<number, number[]>();
    for (const s of start) {
      if (s.kind !== 'sql' || !s.origin) continue;
      const ids = startIds.get(s.origin.operation);
      if (ids) ids.push(s.id!);
      else startIds.set(s.origin.operation, [s.id!]);
    }
    const startIdsOf = (operation: number) => startIds.get(operation) ?? [];

    const retire: Step[] = [];
    if (previousVersionSchema) {
      retire.push(
        sqlStep(`drop the previous version schema ${previousVersionSchema}`, dropVersionSchemaSql(this.context.stateSchema, previousVersionSchema), { destructive: true }),
        { kind: 'await_proxies', description: `wait for the proxies to retire ${previousVersionSchema}`, versionSchema: previousVersionSchema },
      );
    }
    const contract = this.contractWithTriggerDrops(triggers, retire);
    const complete: Step[] = [
      ...this.completeSteps.get('validate')!,
      ...retire,
      ...this.completeSteps.get('retire')!,
      ...contract,
      ...this.completeSteps.get('finish')!,
      ...this.completeSteps.get('rename')!,
      ...this.renameSteps(),
      ...this.completeSteps.get('rename_tables')!,
      ...this.renameTableSteps(),
    ];

    // Each rollback step says which start steps it undoes, so undoing a start that failed half-way
    // touches only what was done (and needs no lock on tables that start never reached).
    const rollback: Step[] = [
      ...(viewsStep ? [{ ...sqlStep(`drop version schema ${versionSchema}`, dropVersionSchemaSql(this.context.stateSchema, versionSchema)), undoes: [viewsStep.id!] }] : []),
      ...stackTriggers.map(({ table, trigger, newVersionSchemas, layers }): Step => ({
        ...restackStep(`give the sync trigger on ${table} back its new versions ${newVersionSchemas.join(', ')}`, schema, table, layers ? restackSyncSql(trigger, layers) : [resetSyncTriggersSql(trigger, newVersionSchemas)]),
        undoes: start.filter((s) => s.description.startsWith(`let the sync trigger on ${table} `)).map((s) => s.id!),
      })),
      ...triggers.map((t): Step => {
        const below = layersBelow.get(t.table);
        const step = below
          ? restackStep(`give the sync trigger on ${t.table} back the rules of the active migrations`, schema, t.table, restackSyncSql(t, below))
          : restackStep(`drop sync trigger on ${t.table}`, schema, t.table, dropSyncTriggerSql(t));
        return { ...step, undoes: [triggerStep(t.table).id!] };
      }),
      ...[...this.rollbackByOperation]
        .map((steps, operation) => (steps ?? []).map((step): Step => (step.kind === 'sql' ? { ...step, undoes: startIdsOf(operation) } : step)))
        .reverse()
        .flat(),
    ];
    return {
      start,
      complete,
      rollback,
      retires: previousVersionSchema,
      ...(createVersionSchema ? {} : { createsVersionSchema: false as const }),
      syncTables: triggers.map((t) => t.table),
      syncRules: Object.fromEntries(triggers.map((t) => [t.table, t.rules])),
      indexNames: this.indexRenames.map((r) => r.to),
      ...this.pendingIndexes(),
    };
  }

  /** What a migration stacked on this one needs to know of its indexes in waiting (kept only when there are some). */
  private pendingIndexes(): Pick<Plan, 'pendingIndexes'> {
    const pending = [...this.indexRenames.map(({ from, to }): PendingIndex => ({ index: from, name: to })), ...this.indexAttaches];
    return pending.length ? { pendingIndexes: pending } : {};
  }

  private versionSchemaStep(): Step {
    const { versionSchema } = this.context;
    const description = `create version schema ${versionSchema}`;
    return this.viewsFromLiveSchema
      ? { kind: 'live_views', description, versionSchema }
      : sqlStep(description, createVersionSchemaSql(this.model, versionSchema, this.versionSchemaOwner(), this.borrowedViews()));
  }

  private borrowedViews(): BorrowedViews | undefined {
    const base = this.context.stackedOn;
    return base && { tables: new Set(base.tables.filter((t) => !base.shared.includes(t))), views: base.views };
  }

  private versionSchemaOwner(): VersionSchemaOwner {
    return { stateSchema: this.context.stateSchema, migration: this.context.migrationName };
  }

  /**
   * The contract phase with each table's sync trigger dropped in the same transaction as that table's
   * contraction (its dropped columns, its shadow swap): while a column the new version does not write
   * still exists, the trigger is what fills it, so the two must go together, however long a lock on
   * another table delays the rest of complete. A table with nothing to contract loses its trigger in
   * a step of its own, added to `retire`.
   */
  private contractWithTriggerDrops(triggers: SyncTrigger[], retire: Step[]): Step[] {
    const contract = [...this.completeSteps.get('contract')!];
    for (const trigger of triggers) {
      const target = `${this.context.schema}.${trigger.table}`;
      const own = contract.filter((s): s is SqlStep => s.kind === 'sql' && s.transactional && s.lockTarget === target);
      const drop = dropSyncTriggerSql(trigger);
      if (!own.length) {
        retire.push(sqlStep(`drop sync trigger on ${trigger.table}`, drop, { lockTarget: target, destructive: true, restacks: { table: trigger.table, statements: drop.length } }));
        continue;
      }
      const merged = sqlStep(`${own.map((s) => s.description).join(', ')} (with the sync trigger on ${trigger.table})`, [...drop, ...own.flatMap((s) => s.statements)], {
        lockTarget: target,
        destructive: true,
        restacks: { table: trigger.table, statements: drop.length },
        ...(own[0]!.origin ? { origin: own[0]!.origin } : {}),
      });
      contract.splice(contract.indexOf(own[0]!), 1, merged);
      for (const step of own.slice(1)) contract.splice(contract.indexOf(step), 1);
    }
    return contract;
  }
}

/** A step that leaves a table's sync function as `statements` make it (made anew at rollback: see engine/restack.ts). */
function restackStep(description: string, schema: string, table: string, statements: string[]): SqlStep {
  return sqlStep(description, statements, { lockTarget: `${schema}.${table}`, restacks: { table, statements: statements.length } });
}

/** A table's layers with `versionSchema` (a migration stacked on them that leaves the table alone) writing as the newest. */
function withWriters(layers: SyncLayer[], versionSchema: string): SyncLayer[] {
  const newest = layers.at(-1)!;
  return [...layers.slice(0, -1), { ...newest, versionSchemas: [...newest.versionSchemas, versionSchema] }];
}

/** Orders renames so none lands on a name still in use by another pending one. */
export function orderRenames(renames: { from: string; to: string }[], temporary: (name: string) => string): { from: string; to: string }[] {
  const pending = renames.filter((r) => r.from !== r.to).map((r) => ({ ...r }));
  const ordered: { from: string; to: string }[] = [];
  while (pending.length) {
    const free = pending.findIndex((r) => !pending.some((other) => other !== r && other.from === r.to));
    if (free >= 0) {
      ordered.push(pending.splice(free, 1)[0]!);
      continue;
    }
    // Every pending target is held by another pending rename: move one aside first.
    const first = pending[0]!;
    const aside = temporary(first.from);
    ordered.push({ from: first.from, to: aside });
    first.from = aside;
  }
  return ordered;
}

/**
 * PostgreSQL 18 keeps NOT NULL as a named constraint, named after the column when it was set
 * (`<table>_<shadow>_not_null` for a shadow column). After the rename it takes the name PostgreSQL
 * would give the column now; a constraint the user named stays as it is.
 */
function renameNotNullConstraintSql(schema: string, table: string, from: string, to: string): string {
  const relation = quoteLiteral(qualified(schema, table));
  const generated = quoteLiteral(`${table}_${from}_not_null`.slice(0, 63));
  const wanted = quoteLiteral(`${table}_${to}_not_null`.slice(0, 63));
  return `DO $tandem$ DECLARE current_name text; BEGIN
  SELECT c.conname INTO current_name FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
   WHERE c.conrelid = ${relation}::regclass AND c.contype = 'n' AND a.attname = ${quoteLiteral(to)};
  IF current_name = ${generated} AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = ${relation}::regclass AND conname = ${wanted}) THEN
    EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', ${relation}, current_name, ${wanted});
  END IF;
END $tandem$`;
}

/** Whether a constraint added on shadow columns involves the shadow column `physical`. */
function mentions(constraint: NewConstraint, physical: string): boolean {
  return (constraint.columns ?? []).includes(physical) || (constraint.body ?? '').includes(quoteIdent(physical));
}
