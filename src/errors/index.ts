import { hintOf, messageOf } from './messages.js';
import type { MigrationFileFact } from './migration-file.js';
import type { PgrollFact } from './pgroll.js';
import type { PlanningFact } from './planning.js';
import type { StateFact } from './state.js';
import type { ToolFact } from './tools.js';

export type { HistoryMismatch, MigrationFileFact } from './migration-file.js';
export type { PgrollFact } from './pgroll.js';
export type { LockHolder, PlanningFact } from './planning.js';
export type { LockHolderSession, Phase, StateFact, StepAt, VersionSchemaConflict } from './state.js';
export type { ConvertUnreadable, ToolFact } from './tools.js';
export { afterPhaseFailure } from './messages.js';

/**
 * Every failure tandem reports to a user is a TandemError carrying one ErrorFact: a closed union of
 * kinds, each with the facts of its case as fields, grouped by area in the files beside this one.
 * messages.ts is the one place facts become words. Exit status 1 means "the operation failed"
 * (validation, database refusal), 2 means "bad usage" (flags, arguments), as DESIGN.md fixes.
 */
export type ErrorFact = PlanningFact | MigrationFileFact | StateFact | ToolFact | PgrollFact;
export type ErrorKind = ErrorFact['kind'];
export type FactOf<K extends ErrorKind> = Extract<ErrorFact, { kind: K }>;

export interface ErrorLocation {
  /** The migration file, when the error is about one. */
  file?: string;
  /** Zero-based index of the operation inside the migration. */
  operation?: number;
  /** The operation's kind, e.g. `add_column` (not the error's kind: that is `fact.kind`). */
  kind?: string;
  /** Dotted path of the offending field inside the operation, e.g. `column.type`. */
  field?: string;
}

export interface TandemErrorOptions extends ErrorLocation {
  /** What the user can do about it, when the throw site knows better than the kind's own hint. */
  hint?: string;
  exitCode?: 1 | 2;
  cause?: unknown;
}

export class TandemError extends Error {
  readonly fact: ErrorFact;
  /** The kind's name, as logs and `--json` output have always shown it (`<phase>_failed` for a phase). */
  readonly code: string;
  readonly file?: string;
  readonly operation?: number;
  readonly kind?: string;
  readonly field?: string;
  readonly hint?: string;
  readonly exitCode: 1 | 2;

  constructor(fact: ErrorFact, options: TandemErrorOptions = {}) {
    super(messageOf(fact), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TandemError';
    this.fact = fact;
    this.code = fact.kind === 'phase_failed' ? `${fact.phase}_failed` : fact.kind;
    this.file = options.file;
    this.operation = options.operation;
    this.kind = options.kind;
    this.field = options.field;
    this.hint = options.hint ?? hintOf(fact);
    this.exitCode = options.exitCode ?? (fact.kind === 'usage' ? 2 : 1);
  }

  /** A copy of this error with location facts filled in where they were missing. */
  at(location: ErrorLocation): TandemError {
    return new TandemError(this.fact, {
      file: this.file ?? location.file,
      operation: this.operation ?? location.operation,
      kind: this.kind ?? location.kind,
      field: this.field ?? location.field,
      hint: this.hint,
      exitCode: this.exitCode,
      cause: this.cause,
    });
  }
}

/** Bad flags or arguments: exit status 2. */
export class UsageError extends TandemError {
  constructor(message: string, hint?: string) {
    super({ kind: 'usage', message }, { hint });
    this.name = 'UsageError';
  }
}

/** The location prefix of an error: `file.yaml: operation 2 (add_column), field column.type`. */
export function describeLocation(location: ErrorLocation): string {
  const parts: string[] = [];
  if (location.operation !== undefined) {
    parts.push(`operation ${location.operation}${location.kind ? ` (${location.kind})` : ''}`);
  }
  if (location.field) parts.push(`field ${location.field}`);
  const where = parts.join(', ');
  if (location.file) return where ? `${location.file}: ${where}` : location.file;
  return where;
}

/** An error as the user reads it: where, what, and the hint. */
export function formatError(error: unknown): string {
  if (error instanceof TandemError) {
    const where = describeLocation(error);
    const lines = [where ? `${where}: ${error.message}` : error.message];
    if (error.hint) lines.push(`hint: ${error.hint}`);
    return lines.join('\n');
  }
  if (isDatabaseError(error)) {
    const lines = [`database error ${error.code}: ${error.message}`];
    if (error.detail) lines.push(`detail: ${error.detail}`);
    if (error.hint) lines.push(`hint: ${error.hint}`);
    return lines.join('\n');
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The fields node-postgres puts on an error that came from the server. */
export interface DatabaseError extends Error {
  code: string;
  detail?: string;
  hint?: string;
  position?: string;
  table?: string;
  column?: string;
  constraint?: string;
}

export function isDatabaseError(error: unknown): error is DatabaseError {
  const code: unknown = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

export function exitCodeOf(error: unknown): 1 | 2 {
  return error instanceof TandemError ? error.exitCode : 1;
}
