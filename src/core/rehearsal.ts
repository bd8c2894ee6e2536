/**
 * Once complete has dropped something, the migration can no longer be rolled back; a step after that
 * point that can never succeed (a relation an earlier step removed, a key whose types do not match, an
 * object that still depends on a dropped column) would leave a migration that neither finishes nor
 * rolls back. So before the first destructive step, complete rehearses every later step tandem wrote:
 * it runs them, in order, in one subtransaction that it then rolls back. What fails there fails while
 * the migration is still active, and `tandem rollback` still works.
 */
import { sqlStep, type Plan, type SqlStep, type Step } from './steps.js';
import { quoteLiteral } from './quote.js';

/** SQLSTATE the rehearsal raises to undo itself; never reaches the caller. */
const REHEARSED = 'T0R01';

const VALIDATE = /^ALTER TABLE .* VALIDATE CONSTRAINT /s;

const DESCRIPTION = 'rehearse the rest of complete (rolled back)';

/**
 * The plan with its complete rehearsed anew: a complete fitted to the migrations stacked on it
 * (engine/restack.ts) runs other statements than the ones rehearsed when it was planned.
 */
export function rehearsedAgain(plan: Plan): Plan {
  return withRehearsal({ ...plan, complete: plan.complete.filter((s) => s.description !== DESCRIPTION) });
}

export function withRehearsal(plan: Plan): Plan {
  const first = plan.complete.findIndex((s) => s.kind === 'sql' && s.destructive);
  if (first < 0) return plan;
  const later = plan.complete.slice(first).filter(rehearsable);
  if (!later.length) return plan;
  const statements = later
    .flatMap((s) => s.statements.map((sql) => (s.transactional ? sql : sql.replace(/^DROP INDEX CONCURRENTLY\b/, 'DROP INDEX'))))
    // VALIDATE scans the table: under the locks the rehearsal holds, that would block the application.
    // Whether rows pass is a question for the step itself, which needs no strong lock.
    .filter((sql) => !VALIDATE.test(sql));
  const body = statements.map((sql) => `    EXECUTE ${quoteLiteral(sql)};`).join('\n');
  const rehearsal = sqlStep(
    DESCRIPTION,
    `DO $tandem_rehearsal$ BEGIN
  BEGIN
${body}
    RAISE EXCEPTION USING ERRCODE = ${quoteLiteral(REHEARSED)};
  EXCEPTION WHEN SQLSTATE ${quoteLiteral(REHEARSED)} THEN
    NULL;
  END;
END $tandem_rehearsal$`,
  );
  return { ...plan, complete: [...plan.complete.slice(0, first), rehearsal, ...plan.complete.slice(first)] };
}

/**
 * tandem's own SQL steps; raw SQL (the user's, which may have effects no rollback undoes) and
 * concurrent builds are left out. DROP INDEX CONCURRENTLY is rehearsed as a plain DROP INDEX.
 */
function rehearsable(step: Step): step is SqlStep {
  // A rename left to a migration stacked on its table (deferredTo) does not run in this complete.
  if (step.kind !== 'sql' || step.origin?.kind === 'sql' || step.deferredTo !== undefined) return false;
  return step.transactional || step.statements.every((sql) => /^DROP INDEX CONCURRENTLY\b/.test(sql));
}
