/**
 * How a run of a migration's steps fails, and what it says then: a step that failed (the state says
 * which, and what continues the migration), or a session that was lost under it.
 */
import { formatError, TandemError } from '../errors.js';
import type { Step } from '../core/steps.js';
import type { MigrationRecord } from '../state/migrations.js';

export type Phase = 'start' | 'complete' | 'rollback';

/**
 * After a reconnect, another tandem process held the lock or had moved the migration on: what this
 * run did is that process's to finish or undo, not this one's.
 */
export function anotherProcessTookOver(error: unknown): boolean {
  return error instanceof TandemError && (error.code === 'busy' || error.code === 'state_changed');
}

/** The error under a step's failure. */
export function rootCause(error: unknown): unknown {
  return error instanceof StepFailure ? error.cause : error;
}

/**
 * True when the session itself is gone (server restart or crash, a terminated backend, a broken
 * network), as opposed to a statement that failed: the work is not wrong, only interrupted.
 */
export function isLostConnection(error: unknown): boolean {
  const cause = rootCause(error);
  if (!(cause instanceof Error)) return false;
  const code = (cause as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('08') || ['57P01', '57P02', '57P03', 'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(code))) {
    return true;
  }
  return /Connection terminated|is not queryable|Client was closed/i.test(cause.message);
}

export class StepFailure extends Error {
  constructor(
    readonly phase: Phase,
    readonly index: number,
    readonly total: number,
    readonly step: Step,
    override readonly cause: unknown,
  ) {
    super(`${phase} step ${index + 1} failed`);
  }
}

/** What a run whose step failed says: which step, why, and what the state allows next. */
export function phaseFailure(phase: Phase, record: MigrationRecord, error: unknown, file?: string, stillActive = false): TandemError {
  if (!(error instanceof StepFailure)) return error instanceof TandemError ? error : new TandemError(`${phase}_failed`, formatError(error), { cause: error });
  const { index, total, step, cause } = error;
  const reason = cause instanceof TandemError ? cause.message : formatError(cause);
  const where = `step ${index + 1} of ${total} ("${step.description}")`;
  const origin = step.origin ? { operation: step.origin.operation, kind: step.origin.kind, field: step.origin.field } : {};
  const hints: Record<Phase, string> = {
    start: 'everything start did was rolled back: the database is as it was before',
    complete: stillActive
      ? `nothing was dropped: "${record.name}" is still active; fix the cause and run tandem complete again, or tandem rollback`
      : 'fix the cause and run tandem complete again: it resumes at this step',
    rollback: 'fix the cause and run tandem rollback again: it resumes at this step',
  };
  const hint = cause instanceof TandemError && cause.hint ? `${cause.hint}; ${hints[phase]}` : hints[phase];
  return new TandemError(`${phase}_failed`, `${phase} of "${record.name}" failed at ${where}: ${reason}`, { file, ...origin, hint, cause });
}

/** What a run that lost its session says: where the migration stands, and what continues it. */
export function connectionLost(
  phase: Phase,
  record: MigrationRecord,
  error: unknown,
  reconnect: { timeoutMs: number } | undefined,
  file?: string,
): TandemError {
  const where = error instanceof StepFailure ? ` at step ${error.index + 1} of ${error.total} ("${error.step.description}")` : '';
  const waited = reconnect ? ` and could not reconnect within ${Math.round(reconnect.timeoutMs / 1000)} s` : '';
  const resume: Record<Phase, string> = {
    start: `nothing was rolled back: "${record.name}" stays "starting" with every step before this one done (the server undid the unfinished one). Once PostgreSQL is reachable, run tandem start ${record.file ?? file ?? 'FILE'} again (or tandem backfill) to go on, or tandem rollback to undo it`,
    complete: `"${record.name}" stays "completing" with every step before this one done. Once PostgreSQL is reachable, run tandem complete again to finish it`,
    rollback: `"${record.name}" stays "rolling_back" with every step before this one done. Once PostgreSQL is reachable, run tandem rollback again to finish it`,
  };
  return new TandemError('connection_lost', `lost the connection to PostgreSQL during ${phase} of "${record.name}"${where}${waited}: ${formatError(rootCause(error))}`, {
    file,
    hint: resume[phase],
    cause: error,
  });
}
