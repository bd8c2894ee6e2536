/**
 * Every failure tandem reports to a user is a TandemError: the facts live in fields, and
 * `formatError` turns them into one readable message. Exit status 1 means "the operation failed"
 * (validation, database refusal), 2 means "bad usage" (flags, arguments), as DESIGN.md fixes.
 */
export interface ErrorLocation {
  /** The migration file, when the error is about one. */
  file?: string;
  /** Zero-based index of the operation inside the migration. */
  operation?: number;
  /** The operation's kind, e.g. `add_column`. */
  kind?: string;
  /** Dotted path of the offending field inside the operation, e.g. `column.type`. */
  field?: string;
}

export interface TandemErrorOptions extends ErrorLocation {
  /** What the user can do about it. */
  hint?: string;
  exitCode?: 1 | 2;
  cause?: unknown;
}

export class TandemError extends Error {
  readonly code: string;
  readonly file?: string;
  readonly operation?: number;
  readonly kind?: string;
  readonly field?: string;
  readonly hint?: string;
  readonly exitCode: 1 | 2;

  constructor(code: string, message: string, options: TandemErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TandemError';
    this.code = code;
    this.file = options.file;
    this.operation = options.operation;
    this.kind = options.kind;
    this.field = options.field;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
  }

  /** A copy of this error with location facts filled in where they were missing. */
  at(location: ErrorLocation): TandemError {
    return new TandemError(this.code, this.message, {
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

export class UsageError extends TandemError {
  constructor(message: string, hint?: string) {
    super('usage', message, { hint, exitCode: 2 });
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

/** The one place errors become words. */
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
