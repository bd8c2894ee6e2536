/**
 * Complete and rollback of a migration in a stack of active ones (see stack.ts). Its plan was made
 * before the migrations stacked on it existed, or on migrations that have completed since, so when
 * the phase begins two kinds of step are fitted to the stack as it is then:
 * - the sync function of each table it has rules on is left to the migrations still active (made anew
 *   from their rules, or dropped when none has any);
 * - complete gives columns, constraints and tables their final names, except on a table a migration
 *   stacked on it shares: that one's plan names them as they are now, so the renames wait for it (its
 *   complete makes them as part of its own, its rollback makes them after undoing its own changes).
 * The fitted plans are stored before the phase runs, so a run that is interrupted resumes them.
 */
import type { MigrationRecord } from '../state/migrations.js';
import type { Plan, Step } from '../core/steps.js';
import { resetSyncTriggersSql, restackSyncSql, syncFunctionName, SYNC_TRIGGER_NAME } from '../core/triggers.js';
import { rehearsedAgain } from '../core/rehearsal.js';
import { syncLayers } from './stack.js';

interface Where {
  schema: string;
  stateSchema: string;
}

/** The statements that leave `table`'s sync function to the migrations `active` (oldest first). */
function syncFunctionSql(where: Where, table: string, active: MigrationRecord[]): string[] {
  const target = { schema: where.schema, table, functionSchema: where.stateSchema, functionName: syncFunctionName(where.schema, table), triggerName: SYNC_TRIGGER_NAME };
  const entry = syncLayers(active).find((t) => t.table === table);
  if (!entry) return restackSyncSql(target, []);
  return entry.layers ? restackSyncSql(target, entry.layers) : [resetSyncTriggersSql(target, entry.newVersionSchemas)];
}

/** Steps whose sync statements are made anew for the migrations `active` after the phase. */
function restacked(steps: Step[], where: Where, active: MigrationRecord[]): Step[] {
  return steps.map((step) => {
    if (step.kind !== 'sql' || !step.restacks) return step;
    const statements = syncFunctionSql(where, step.restacks.table, active);
    return { ...step, statements: [...statements, ...step.statements.slice(step.restacks.statements)], restacks: { table: step.restacks.table, statements: statements.length } };
  });
}

/**
 * The complete plan of `record`, the oldest active migration, fitted to the migrations stacked on it
 * (`newer`, oldest first): its renames on a table one of them shares are marked as left to the first
 * that does (`deferredTo`, its id), which makes them in its complete, or after its rollback.
 */
export function fitComplete(record: MigrationRecord, newer: MigrationRecord[], where: Where): Plan {
  const heirOf = new Map<string, number>();
  for (const heir of newer) {
    const touches = heir.plan.touches ?? [];
    if (!heir.plan.versionTables) continue;
    for (const table of record.plan.versionTables ?? []) {
      if (!heirOf.has(table.physical) && (touches.includes(table.name) || touches.includes(table.physical))) heirOf.set(table.physical, heir.id);
    }
  }
  const complete = restacked(record.plan.complete, where, newer).map((step): Step => {
    if (step.kind !== 'sql' || step.renameOn === undefined) return step;
    const { deferredTo: _before, ...rest } = step;
    const heir = heirOf.get(step.renameOn);
    return heir === undefined ? rest : { ...rest, deferredTo: heir };
  });
  // What it creates on those tables has its final name only once the heir is done.
  const names = new Set((record.plan.versionTables ?? []).filter((t) => heirOf.has(t.physical)).map((t) => t.name));
  const expect = record.plan.expect?.filter((e) => !names.has(e.table));
  return rehearsedAgain({ ...record.plan, complete, ...(expect ? { expect } : {}) });
}

/**
 * The rollback plan of `record`, the newest active migration, fitted to the migrations under it
 * (`older`, oldest first), ending with the renames that completed migrations left to it (`inherited`,
 * in the order they completed).
 */
export function fitRollback(record: MigrationRecord, older: MigrationRecord[], inherited: MigrationRecord[], where: Where): Plan {
  const renames = inherited.flatMap((completed) =>
    completed.plan.complete.flatMap((step): Step[] => {
      if (step.kind !== 'sql' || step.deferredTo !== record.id) return [];
      const { deferredTo: _heir, ...rest } = step;
      return [rest];
    }),
  );
  return { ...record.plan, rollback: [...restacked(record.plan.rollback, where, older), ...renames] };
}
