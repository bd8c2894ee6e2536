/**
 * How a run of a migration's steps fails, and what it says then: a step that failed (the state says
 * which, and what continues the migration), or a session that was lost under it.
 */
import { afterPhaseFailure, formatError, TandemError } from '../errors/index.js';
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
  if (!(error instanceof StepFailure)) {
    return error instanceof TandemError ? error : new TandemError({ kind: 'phase_failed', phase, name: record.name, reason: formatError(error) }, { cause: error });
  }
  const { index, total, step, cause } = error;
  const reason = cause instanceof TandemError ? cause.message : formatError(cause);
  const origin = step.origin ? { operation: step.origin.operation, kind: step.origin.kind, field: step.origin.field } : {};
  const next = afterPhaseFailure(phase, record.name, stillActive);
  const hint = cause instanceof TandemError && cause.hint ? `${cause.hint}; ${next}` : next;
  const at = { index: index + 1, total, description: step.description };
  return new TandemError({ kind: 'phase_failed', phase, name: record.name, step: at, reason }, { file, ...origin, hint, cause });
}

/** What a run that lost its session says: where the migration stands, and what continues it. */
export function connectionLost(
  phase: Phase,
  record: MigrationRecord,
  error: unknown,
  reconnect: { timeoutMs: number } | undefined,
  file?: string,
): TandemError {
  const step = error instanceof StepFailure ? { index: error.index + 1, total: error.total, description: error.step.description } : undefined;
  const reconnectSeconds = reconnect ? Math.round(reconnect.timeoutMs / 1000) : undefined;
  return new TandemError(
    { kind: 'connection_lost', phase, name: record.name, file: record.file ?? file, step, reconnectSeconds, reason: formatError(rootCause(error)) },
    { file, cause: error },
  );
}
