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
import { STANDARD, type ParameterValue, type TrackedParameters } from './client-parameters.js';
import { SERVER_NAME_PREFIX } from './prepared.js';

export type PinReason =
  | 'set' // session-level SET (also SET SESSION CHARACTERISTICS)
  | 'listen'
  | 'prepare' // SQL-level PREPARE (protocol-level statements are handled by prepared.ts)
  | 'deallocate' // SQL-level DEALLOCATE of one of the proxy's own server-side names (tandem_…)
  | 'cursor_with_hold'
  | 'temporary_object' // CREATE TEMP table/view/sequence, SELECT INTO TEMP, CREATE TABLE pg_temp.x
  | 'advisory_lock' // pg_advisory_lock and friends: held until unlocked or the session ends
  | 'set_config'; // set_config(name, value, false)

export interface Pinning {
  reason: PinReason;
  /** What was seen, for the log line: e.g. `SET statement_timeout`, `pg_advisory_lock()`. */
  detail: string;
}

/**
 * A session-level SET or RESET of an unreported tracked parameter (client-parameters.ts), which does
 * not pin: the caller records it once its transaction commits. (The server reports the others'
 * changes itself.)
 */
export interface TrackedSetting {
  name: string;
  value: ParameterValue;
}

/** What a client statement does to its session: why it pins, and the tracked settings it changes. */
export interface StatementEffects {
  pinning: Pinning | undefined;
  settings: TrackedSetting[];
}

const NO_EFFECTS: StatementEffects = { pinning: undefined, settings: [] };

/** Loads the parser (WASM) once per process; call before the first `pinningOf`. */
export function loadPinningParser(): Promise<void> {
  return loadParser();
}

/**
 * Words that any pinning statement, or one that changes a tracked setting, must contain. `set`,
 * `reset` and `discard` only count at the start of a statement (after `;`, whitespace and
 * comments), so `UPDATE … SET` does not reach the parser.
 */
const CANDIDATE =
  /(?:^|;)\s*(?:(?:--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)\s*)*(?:(?:re)?set|discard)\b|listen|prepare|deallocate|hold|temp|advisory_lock|set_config/i;

/**
 * Why `sql` (a simple Query's text, or a Parse's) pins its client, or undefined when it can be
 * pooled per transaction. Text the parser rejects pools: the server will reject it too.
 */
export function pinningOf(sql: string, tracked: TrackedParameters = STANDARD): Pinning | undefined {
  return effectsOf(sql, tracked).pinning;
}

/** `pinningOf`, and the tracked settings the text changes for the session. */
export function effectsOf(sql: string, tracked: TrackedParameters = STANDARD): StatementEffects {
  if (!CANDIDATE.test(sql)) return NO_EFFECTS;
  let statements: Node[];
  try {
    statements = (parseSync(sql).stmts ?? []).flatMap((raw) => (raw.stmt ? [raw.stmt] : []));
  } catch {
    return NO_EFFECTS;
  }
  const settings: TrackedSetting[] = [];
  for (const statement of statements) {
    // DISCARD ALL resets every setting, as RESET ALL does.
    if ('DiscardStmt' in statement && statement.DiscardStmt.target === 'DISCARD_ALL') {
      settings.push(...unreportedDefaults(tracked));
      continue;
    }
    if ('VariableSetStmt' in statement) {
      const changed = trackedSettings(statement.VariableSetStmt, tracked);
      if (changed) {
        settings.push(...changed);
        continue;
      }
    }
    const found = pinningOfStatement(statement);
    if (found) return { pinning: found, settings };
  }
  return { pinning: undefined, settings };
}

type VariableSet = Extract<Node, { VariableSetStmt: unknown }>['VariableSetStmt'];

/**
 * A session-level SET or RESET that changes only tracked parameters: the unreported ones it sets
 * (empty for a reported one); undefined when the statement is something else, or a value cannot be read.
 */
function trackedSettings(set: VariableSet, tracked: TrackedParameters): TrackedSetting[] | undefined {
  if (set.is_local) return undefined;
  if (set.kind === 'VAR_RESET_ALL') return unreportedDefaults(tracked);
  const name = set.name === undefined ? undefined : tracked.trackedName(set.name);
  if (!name) return undefined;
  if (tracked.isReported(name)) return set.kind === 'VAR_SET_CURRENT' ? undefined : [];
  if (set.kind === 'VAR_RESET' || set.kind === 'VAR_SET_DEFAULT') return [{ name, value: null }];
  if (set.kind !== 'VAR_SET_VALUE' || set.args?.length !== 1) return undefined;
  const value = constantText(set.args[0]);
  return value === undefined ? undefined : [{ name, value }];
}

function unreportedDefaults(tracked: TrackedParameters): TrackedSetting[] {
  return tracked.unreported.map((name) => ({ name, value: null }));
}

function constantText(node: Node | undefined): string | undefined {
  if (!node || !('A_Const' in node)) return undefined;
  const constant = node.A_Const;
  if (constant.ival) return String(constant.ival.ival ?? 0);
  if (constant.fval) return constant.fval.fval;
  if (constant.sval) return constant.sval.sval;
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
  // The proxy's names are shared by the clients of a connection, and its record says the connection
  // holds the statement: the next client would Bind a statement the server no longer has. (A
  // client's own SQL-level names exist only on connections its PREPARE pinned.)
  const deallocated = 'DeallocateStmt' in node ? node.DeallocateStmt.name : undefined;
  if (deallocated?.startsWith(SERVER_NAME_PREFIX)) return { reason: 'deallocate', detail: `DEALLOCATE ${deallocated}` };
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
