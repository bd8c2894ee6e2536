/**
 * Which client statements cannot be pooled per transaction: they leave state in the server session
 * that outlives the transaction, so the next client of that server connection would inherit it and
 * this client would lose it. The caller pins such a client to its server connection for the rest of
 * its session (friendlier than refusing), and logs and counts the reason.
 *
 * Almost every query is ordinary, so a keyword prefilter over the raw text decides first; only text
 * that mentions one of the words is parsed (libpg-query, PostgreSQL's own grammar), which tells a
 * real `LISTEN` from the word in a string, a comment or a quoted identifier.
 */
import { parseSync, type Node } from 'libpg-query';
import { loadParser } from '../../sqlparse/parse.js';

export type PinReason =
  | 'set' // session-level SET (also SET SESSION CHARACTERISTICS)
  | 'listen'
  | 'prepare' // SQL-level PREPARE (protocol-level statements are handled by prepared.ts)
  | 'cursor_with_hold'
  | 'temporary_object' // CREATE TEMP table/view/sequence, SELECT INTO TEMP, CREATE TABLE pg_temp.x
  | 'advisory_lock' // pg_advisory_lock and friends: held until unlocked or the session ends
  | 'set_config'; // set_config(name, value, false)

export interface Pinning {
  reason: PinReason;
  /** What was seen, for the log line: e.g. `SET statement_timeout`, `pg_advisory_lock()`. */
  detail: string;
}

/** Loads the parser (WASM) once per process; call before the first `pinningOf`. */
export function loadPinningParser(): Promise<void> {
  return loadParser();
}

/**
 * Words that any pinning statement must contain. `set` only counts at the start of a statement
 * (after `;`, whitespace and comments), so `UPDATE … SET` does not reach the parser.
 */
const CANDIDATE =
  /(?:^|;)\s*(?:(?:--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)\s*)*set\b|listen|prepare|hold|temp|advisory_lock|set_config/i;

/**
 * Why `sql` (a simple Query's text, or a Parse's) pins its client, or undefined when it can be
 * pooled per transaction. Text the parser rejects pools: the server will reject it too.
 */
export function pinningOf(sql: string): Pinning | undefined {
  if (!CANDIDATE.test(sql)) return undefined;
  let statements: Node[];
  try {
    statements = (parseSync(sql).stmts ?? []).flatMap((raw) => (raw.stmt ? [raw.stmt] : []));
  } catch {
    return undefined;
  }
  for (const statement of statements) {
    const found = pinningOfStatement(statement);
    if (found) return found;
  }
  return undefined;
}

/** CURSOR_OPT_HOLD in PostgreSQL's parsenodes.h. */
const CURSOR_OPT_HOLD = 0x0020;

const SESSION_ADVISORY_LOCKS = new Set(['pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared']);

interface RangeVarLike {
  relname?: string;
  schemaname?: string;
  relpersistence?: string;
}

function pinningOfStatement(node: Node): Pinning | undefined {
  if ('VariableSetStmt' in node) {
    const set = node.VariableSetStmt;
    // SET inside a transaction block still outlives the transaction once it commits; only LOCAL
    // (and SET TRANSACTION …) end with it. RESET returns a setting to the session default, which is
    // what every pooled connection already has, so it pins nothing.
    if (set.is_local || set.kind === 'VAR_RESET' || set.kind === 'VAR_RESET_ALL') return undefined;
    if (set.kind === 'VAR_SET_MULTI' && set.name !== 'SESSION CHARACTERISTICS') return undefined;
    return { reason: 'set', detail: `SET ${set.name ?? ''}`.trim() };
  }
  if ('ListenStmt' in node) return { reason: 'listen', detail: `LISTEN ${node.ListenStmt.conditionname ?? ''}`.trim() };
  if ('PrepareStmt' in node) return { reason: 'prepare', detail: `PREPARE ${node.PrepareStmt.name ?? ''}`.trim() };
  if ('DeclareCursorStmt' in node) {
    const cursor = node.DeclareCursorStmt;
    if ((cursor.options ?? 0) & CURSOR_OPT_HOLD) return { reason: 'cursor_with_hold', detail: `DECLARE ${cursor.portalname ?? ''} WITH HOLD` };
  }
  const temporary = temporaryRelation(node);
  if (temporary) return { reason: 'temporary_object', detail: `temporary ${temporary}` };
  return functionPinning(node);
}

/** The name of a temporary relation the statement creates, unless it goes at commit (ON COMMIT DROP). */
function temporaryRelation(node: Node): string | undefined {
  let relation: RangeVarLike | undefined;
  let onCommit: string | undefined;
  if ('CreateStmt' in node) {
    relation = node.CreateStmt.relation;
    onCommit = node.CreateStmt.oncommit;
  } else if ('ViewStmt' in node) relation = node.ViewStmt.view;
  else if ('CreateSeqStmt' in node) relation = node.CreateSeqStmt.sequence;
  else if ('CreateTableAsStmt' in node) {
    relation = node.CreateTableAsStmt.into?.rel;
    onCommit = node.CreateTableAsStmt.into?.onCommit;
  } else if ('SelectStmt' in node && node.SelectStmt.intoClause) {
    relation = node.SelectStmt.intoClause.rel;
    onCommit = node.SelectStmt.intoClause.onCommit;
  }
  if (!relation || onCommit === 'ONCOMMIT_DROP') return undefined;
  const temporary = relation.relpersistence === 't' || relation.schemaname === 'pg_temp';
  return temporary ? (relation.relname ?? '') : undefined;
}

/** Session advisory locks and `set_config(…, false)` anywhere in the statement's expressions. */
function functionPinning(node: unknown): Pinning | undefined {
  if (Array.isArray(node)) {
    for (const item of node) {
      const found = functionPinning(item);
      if (found) return found;
    }
    return undefined;
  }
  if (typeof node !== 'object' || node === null) return undefined;
  const call = (node as { FuncCall?: { funcname?: Node[]; args?: Node[] } }).FuncCall;
  if (call) {
    const names = call.funcname ?? [];
    const last = names[names.length - 1];
    const name = last && 'String' in last ? last.String.sval : undefined;
    if (name && SESSION_ADVISORY_LOCKS.has(name)) return { reason: 'advisory_lock', detail: `${name}()` };
    if (name === 'set_config' && !isTrueConstant(call.args?.[2])) return { reason: 'set_config', detail: 'set_config(…, false)' };
  }
  for (const value of Object.values(node)) {
    const found = functionPinning(value);
    if (found) return found;
  }
  return undefined;
}

/** Only a literal true makes set_config transaction-local; anything computed might be false. */
function isTrueConstant(node: Node | undefined): boolean {
  if (!node) return false;
  if ('A_Const' in node) {
    const constant = node.A_Const;
    if (constant.boolval) return constant.boolval.boolval === true;
    const text = constant.sval?.sval?.toLowerCase();
    return text !== undefined && ['t', 'true', 'on', 'yes', 'y', '1'].includes(text);
  }
  if ('TypeCast' in node) return isTrueConstant(node.TypeCast.arg);
  return false;
}
