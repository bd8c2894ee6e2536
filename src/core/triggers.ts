/**
 * Sync triggers: while a migration is active, old and new versions write the same rows, each
 * through its own columns. One BEFORE INSERT OR UPDATE trigger per table keeps every pair in step:
 * `up` computes the new version's column from the old one's, `down` the reverse.
 *
 * Which direction applies to a row:
 * - an UPDATE that changed only one side of a pair was a write of that side: compute the other;
 * - otherwise the writer decides: a session whose search_path starts with the new version schema is
 *   the new version (down); anyone else (the old version's views, the bare tables, the backfill) is
 *   the old version (up).
 *
 * The function evaluates the migration's `up`/`down` expressions, which name functions and operators,
 * so it runs under a fixed search_path (pg_catalog first, the migrated schema, pg_temp last): whoever
 * writes, a function that another role put on the writer's search_path (a schema named like the
 * writer, CREATE on some schema it searches) is never called in the writer's name. That hides the
 * writer's search_path from the function, so the trigger's WHEN (evaluated in the writer's session,
 * its operators bound when the trigger is created) hands the writer's first schema over in a
 * transaction-local setting, just before PostgreSQL calls the function for that row; the function
 * finds it among the version schemas the trigger passes as arguments. The same WHEN keeps the
 * trigger out of the backfill's own rows when the backfill computes the columns itself: one test per
 * row, as few as a trigger that must skip some rows can have (an older tandem had one trigger per
 * side, each with its own WHEN, and the backfill paid both; see legacy-sync-triggers.ts).
 * The writer test reads only NEW/OLD and the session's search_path, so the trigger never recurses and
 * never applies a pair twice, whichever way a write arrives (proxy, version view, plain search_path).
 */
import type { NameBinding } from './model.js';
import { substituteColumnRefs } from './rewrite.js';
import { derivedIdent, qualified, quoteIdent, quoteLiteral } from './quote.js';
import { LEGACY_SYNC_TRIGGER_NEW_NAME, legacySyncTriggersSql } from './legacy-sync-triggers.js';

export interface SyncRule {
  description: string;
  /** The physical column the old version writes (absent for columns new in this migration). */
  oldColumn?: string;
  /** The physical column the new version writes (absent for columns it no longer sees). */
  newColumn?: string;
  /**
   * Computes the new column from the old version's row. Several expressions (several operations on
   * one column) apply in order, each seeing the value so far under the column's name.
   */
  up?: SyncExpression[];
  /** Apply `up` only where the new column is still NULL (a volatile default filling existing rows). */
  fillOnly?: boolean;
  /** Computes the old column from the new version's row, last operation first. */
  down?: SyncExpression[];
  /** The operation the rule came from, for error messages. */
  origin?: { operation: number; kind: string };
}

export interface SyncExpression {
  sql: string;
  /** The names it may use, bound to physical columns. */
  names: Record<string, NameBinding>;
  /** The type its result is assigned to, for checking it before anything runs. */
  resultType: string;
  /** Where it came from, for error messages. */
  origin: { operation: number; kind: string; field: string };
}

export interface SyncTrigger {
  schema: string;
  table: string;
  /** Where the function lives (the state schema, so the user's schema stays clean). */
  functionSchema: string;
  functionName: string;
  triggerName: string;
  versionSchema: string;
  rules: SyncRule[];
}

/** The table's sync trigger: one for every writer. */
export const SYNC_TRIGGER_NAME = '_tandem_sync';

/** Set (locally) by a backfill transaction that computes the synced columns in its own UPDATE. */
export const BACKFILL_SETTING = 'tandem.backfill';

/**
 * Set (locally) by the sync trigger's WHEN to the writer's first schema, for the function that it
 * is about to call: the function's own search_path hides the writer's.
 */
export const WRITER_SETTING = 'tandem.writer_schema';

/**
 * The SET clause that gives a row what the trigger's `up` direction would, for a backfill that runs
 * with the trigger held off: each new column from its `up` expressions, written over the physical
 * columns. Undefined when an expression holds a subquery, whose names PL/pgSQL resolves by its own
 * rules (the backfill then fires the trigger instead).
 */
export function backfillAssignments(rules: SyncRule[]): string | undefined {
  const assignments: string[] = [];
  for (const rule of rules) {
    if (!rule.newColumn || !rule.up?.length) continue;
    let value: string | undefined;
    for (const expression of rule.up) {
      if (/\bselect\b/i.test(expression.sql)) return undefined;
      const previous = value;
      const sql = substituteColumnRefs(expression.sql, (name) => {
        const binding = expression.names[name];
        if (!binding) return undefined;
        return binding.column === rule.newColumn && previous !== undefined ? `(${previous})` : quoteIdent(binding.column);
      });
      value = `CAST((${sql}) AS ${expression.resultType})`;
    }
    const column = quoteIdent(rule.newColumn);
    assignments.push(`${column} = ${rule.fillOnly ? `COALESCE(${column}, ${value})` : value}`);
  }
  return assignments.length ? assignments.join(', ') : undefined;
}

export function createSyncTriggerSql(trigger: SyncTrigger): string[] {
  const layers = [{ versionSchemas: [trigger.versionSchema], rules: trigger.rules }];
  return [syncFunctionSql(trigger, layers), syncTriggerSql(trigger, [trigger.versionSchema])];
}

/**
 * The rules of one migration on a table, in a table's stack of active migrations, and the version
 * schemas whose writers see the table as that migration does: its own and those of migrations stacked
 * on it that left the table alone.
 */
export interface SyncLayer {
  versionSchemas: string[];
  rules: SyncRule[];
}

type SyncTarget = Pick<SyncTrigger, 'schema' | 'table' | 'functionSchema' | 'functionName' | 'triggerName'>;

/**
 * The table's sync function and the trigger that calls it, for the active migrations that change the
 * table, oldest first, made anew over the function the table may have had (and the triggers an older
 * tandem made beside it, dropped).
 */
export function createSyncFunctionSql(target: SyncTarget, layers: SyncLayer[]): string[] {
  return [syncFunctionSql(target, layers), syncTriggerSql(target, layers.flatMap((l) => l.versionSchemas)), dropLegacyTriggersSql(target)];
}

/**
 * The sync function. One migration: the function above. Several (stacked migrations on one table):
 * a writer sees the table as one of them does (its position: 0 for the oldest version and anyone who
 * is no version, j for the writers of layer j), and each layer's pairs go `down` for a writer at or
 * above it and `up` for one below: the downs newest layer first, the ups oldest first, so that a
 * value written through any version flows through each layer's expressions in order.
 */
function syncFunctionSql(target: SyncTarget, layers: SyncLayer[]): string {
  const fn = qualified(target.functionSchema, target.functionName);
  const trigger = { ...target, versionSchema: layers.at(-1)!.versionSchemas[0]!, rules: layers.flatMap((l) => l.rules) };
  const blocksOf = (layer: SyncLayer) => layer.rules.map((rule) => ruleBlock(rule, trigger)).join('\n');
  // Read first, before any expression of the migration runs (one could write to another synced table).
  const writerSchema = `pg_catalog.current_setting(${quoteLiteral(WRITER_SETTING)}, true)`;
  let declarations: string;
  if (layers.length === 1) {
    declarations = `  -- The writer is the new version when its first schema is one the trigger names (see syncTriggerSql).
  _tandem_from_new boolean := COALESCE(${writerSchema} = ANY (TG_ARGV), false);`;
  } else {
    // The trigger names the layers' version schemas in layer order; TG_ARGV counts from 0, so a
    // layer's schemas are at the indexes below the count of the schemas up to it.
    let count = 0;
    const positions = layers.map((layer, i) => `WHEN _tandem_at < ${(count += layer.versionSchemas.length)} THEN ${i + 1}`);
    declarations = `  -- The writer's position in the table's stack of versions, from its first schema's place among the
  -- version schemas the trigger names (see syncTriggerSql).
  _tandem_at int := pg_catalog.array_position(TG_ARGV, ${writerSchema});
  _tandem_writer int := CASE WHEN _tandem_at IS NULL THEN 0 ${positions.join(' ')} ELSE 0 END;
  _tandem_from_new boolean;`;
  }
  const body =
    layers.length === 1
      ? blocksOf(layers[0]!)
      : [
          ...layers
            .map((layer, i) => ({ layer, position: i + 1 }))
            .reverse()
            .map(({ layer, position }) => `  IF _tandem_writer >= ${position} THEN\n  _tandem_from_new := true;\n${blocksOf(layer)}\n  END IF;`),
          ...layers.map((layer, i) => `  IF _tandem_writer < ${i + 1} THEN\n  _tandem_from_new := false;\n${blocksOf(layer)}\n  END IF;`),
        ].join('\n');
  return `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ${fixedSearchPath(target.schema)}
AS $tandem$
#variable_conflict use_column
DECLARE
${declarations}
  _tandem_direction text;
BEGIN
${body}
  RETURN NEW;
END
$tandem$`;
}

/**
 * The table's sync function and trigger made anew for the migrations that change it now, after one
 * of them started, completed or rolled back; with none left, dropped.
 */
export function restackSyncSql(target: SyncTarget, layers: SyncLayer[]): string[] {
  if (!layers.length) return [dropLegacyTriggersSql(target), ...dropSyncTriggerSql(target)];
  return createSyncFunctionSql(target, layers);
}

/**
 * Drops the triggers an older tandem put beside SYNC_TRIGGER_NAME, one per version position
 * (LEGACY_SYNC_TRIGGER_NEW_NAME, then `…_2`, `…_3` for stacked migrations): the function made anew
 * takes every writer through the one trigger, and they would call it a second time.
 */
function dropLegacyTriggersSql(target: SyncTarget): string {
  const table = quoteLiteral(qualified(target.schema, target.table));
  const name = LEGACY_SYNC_TRIGGER_NEW_NAME;
  return `DO $tandem$ DECLARE legacy name; BEGIN
  FOR legacy IN SELECT tgname FROM pg_catalog.pg_trigger
                 WHERE tgrelid = pg_catalog.to_regclass(${table}) AND NOT tgisinternal
                   AND (tgname = ${quoteLiteral(name)}
                        OR pg_catalog.starts_with(tgname, ${quoteLiteral(`${name}_`)}) AND pg_catalog.substr(tgname, ${name.length + 2}) ~ '^[0-9]+$') LOOP
    EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', legacy, ${table});
  END LOOP;
END $tandem$`;
}

/**
 * The trigger that calls the function for every writer, with the version schemas whose writers are
 * not the oldest version as arguments (a stack's in layer order). Its WHEN runs in the writer's
 * session, as PostgreSQL is about to call the function for the row: it keeps the trigger out of the
 * backfill's rows when the backfill computes the columns in its own UPDATE (one test a row, the only
 * cost the backfill pays beside the row lock that any BEFORE trigger takes), and for anyone else
 * hands the writer's first schema to the function in WRITER_SETTING (set_config returns the value it
 * set, never NULL: that part always holds).
 */
export function syncTriggerSql(target: SyncTarget, versionSchemas: string[]): string {
  const notBackfill = `pg_catalog.current_setting(${quoteLiteral(BACKFILL_SETTING)}, true) IS DISTINCT FROM 'on'`;
  const handOver = `pg_catalog.set_config(${quoteLiteral(WRITER_SETTING)}, COALESCE(${FIRST_SCHEMA}, ''), true) IS NOT NULL`;
  return `CREATE OR REPLACE TRIGGER ${quoteIdent(target.triggerName)}
  BEFORE INSERT OR UPDATE ON ${qualified(target.schema, target.table)}
  FOR EACH ROW WHEN (${notBackfill} AND ${handOver})
  EXECUTE FUNCTION ${qualified(target.functionSchema, target.functionName)}(${versionSchemas.map(quoteLiteral).join(', ')})`;
}

/**
 * The first schema of the writer's search_path (what `(current_schemas(false))[1]` is, without
 * building the array): a version schema when it writes through one.
 */
const FIRST_SCHEMA = 'pg_catalog.current_schema()';

/**
 * The trigger of a sync function made by an earlier migration, given the new-version schemas, if it
 * is still there: a stacked migration's rollback runs this after the migration it was stacked on may
 * have completed and dropped it. A function made by an older tandem tells the writer by which of its
 * two triggers called it: those are given the schemas the way it made them.
 */
export function resetSyncTriggersSql(trigger: SyncTarget, newVersionSchemas: string[]): string {
  const table = quoteLiteral(qualified(trigger.schema, trigger.table));
  const exists = (name: string) => `EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass(${table}) AND tgname = ${quoteLiteral(name)})`;
  const execute = (statements: string[]) => statements.map((sql) => `    EXECUTE ${quoteLiteral(sql)};`).join('\n');
  return `DO $tandem$ BEGIN
  IF ${exists(LEGACY_SYNC_TRIGGER_NEW_NAME)} THEN
${execute(legacySyncTriggersSql(trigger, newVersionSchemas))}
  ELSIF ${exists(trigger.triggerName)} THEN
${execute([syncTriggerSql(trigger, newVersionSchemas)])}
  END IF;
END $tandem$`;
}

/** The sync function of a table: one per table, in the state schema. */
export function syncFunctionName(schema: string, table: string): string {
  return derivedIdent('sync_', `${schema}_${table}`);
}

/**
 * The search_path under which tandem evaluates anything a migration wrote (sync expressions, the
 * backfill): the system catalog first, then the migrated schema, temporary objects last.
 */
export function fixedSearchPath(schema: string): string {
  return `pg_catalog, ${quoteIdent(schema)}, pg_temp`;
}

/** Drops the trigger and its function (and the second trigger an older tandem made beside it). */
export function dropSyncTriggerSql(trigger: SyncTarget): string[] {
  return [
    `DROP TRIGGER IF EXISTS ${quoteIdent(trigger.triggerName)} ON ${qualified(trigger.schema, trigger.table)}`,
    `DROP TRIGGER IF EXISTS ${quoteIdent(LEGACY_SYNC_TRIGGER_NEW_NAME)} ON ${qualified(trigger.schema, trigger.table)}`,
    `DROP FUNCTION IF EXISTS ${qualified(trigger.functionSchema, trigger.functionName)}()`,
  ];
}

function ruleBlock(rule: SyncRule, trigger: SyncTrigger): string {
  const o = rule.oldColumn ? `NEW.${quoteIdent(rule.oldColumn)}` : undefined;
  const n = rule.newColumn ? `NEW.${quoteIdent(rule.newColumn)}` : undefined;
  const changed = (column: string | undefined) =>
    column ? `NEW.${quoteIdent(column)} IS DISTINCT FROM OLD.${quoteIdent(column)}` : 'false';
  const lines = [
    `  -- ${rule.description.replace(/\n/g, ' ')}`,
    `  IF TG_OP = 'UPDATE' AND ${changed(rule.newColumn)} AND NOT ${changed(rule.oldColumn)} THEN`,
    `    _tandem_direction := 'down';`,
    `  ELSIF TG_OP = 'UPDATE' AND ${changed(rule.oldColumn)} AND NOT ${changed(rule.newColumn)} THEN`,
    `    _tandem_direction := 'up';`,
    `  ELSIF _tandem_from_new THEN`,
    `    _tandem_direction := 'down';`,
    `  ELSE`,
    `    _tandem_direction := 'up';`,
    `  END IF;`,
  ];
  if (rule.up?.length && n) {
    const when = rule.fillOnly ? ` AND ${n} IS NULL` : '';
    lines.push(`  IF _tandem_direction = 'up'${when} THEN`, ...rule.up.map((e) => assignment(n, e, trigger)), `  END IF;`);
  }
  if (rule.down?.length && o) {
    lines.push(`  IF _tandem_direction = 'down' THEN`, ...downChain(o, rule.down, rule.newColumn, trigger), `  END IF;`);
  }
  return lines.join('\n');
}

/**
 * The `down`s of the operations chained on one column, the latest operation's first: each turns the
 * value the one before it made (the first: the new column's) back into the value before its own
 * operation, and the last one's is the old column's. The values in between live in variables of
 * their own types, since neither column's type need hold them.
 */
function downChain(target: string, chain: SyncExpression[], newColumn: string | undefined, trigger: SyncTrigger): string[] {
  if (chain.length === 1 || !newColumn) return chain.map((e) => assignment(target, e, trigger));
  const step = (i: number) => `_tandem_down_${i}`;
  return [
    `    DECLARE`,
    ...chain.slice(0, -1).map((e, i) => `      ${step(i + 1)} ${e.resultType};`),
    `    BEGIN`,
    ...chain.map((e, i) => assignment(i === chain.length - 1 ? target : step(i + 1), e, trigger, i === 0 ? undefined : { column: newColumn, variable: step(i) })),
    `    END;`,
  ];
}

/**
 * A nested block that binds the row's columns to the names the expression uses, then assigns. The
 * explicit CAST is the conversion the expression was checked with before start (expressionProbeSql).
 * In a chain of `down`s, the names of the new column read the value the `down` before made instead.
 */
function assignment(target: string, expression: SyncExpression, trigger: SyncTrigger, chained?: { column: string; variable: string }): string {
  const names = expression.names;
  const used = referencedNames(expression.sql, Object.keys(names));
  const declarations = used.map((name) => {
    const binding = names[name]!;
    if (binding.column === chained?.column) return `      ${quoteIdent(name)} ${binding.type} := ${chained.variable};`;
    const column = quoteIdent(binding.column);
    return `      ${quoteIdent(name)} ${qualified(trigger.schema, trigger.table)}.${column}%TYPE := NEW.${column};`;
  });
  return [
    `    DECLARE`,
    ...declarations,
    `    BEGIN`,
    `      ${target} := CAST((${expression.sql}) AS ${expression.resultType});`,
    `    END;`,
  ].join('\n');
}

/**
 * The candidate names an expression mentions, as bare words (case-folded, as PostgreSQL does) or
 * quoted identifiers. Declaring only these keeps the per-row cost to what the expression needs;
 * a false positive (a word inside a string literal) only declares a variable that is not used.
 */
export function referencedNames(expression: string, candidates: string[]): string[] {
  const words = new Set<string>();
  for (const match of expression.matchAll(/"((?:[^"]|"")+)"|([A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)/g)) {
    if (match[1] !== undefined) words.add(match[1].replace(/""/g, '"'));
    else if (match[2] !== undefined) words.add(match[2].toLowerCase());
  }
  return candidates.filter((name) => words.has(name));
}

/**
 * A query that PostgreSQL parses and plans but never runs, to check an expression before any trigger
 * uses it: the names are bound to typed NULLs (behind OFFSET 0, so nothing is constant-folded).
 */
export function expressionProbeSql(expression: string, names: Record<string, NameBinding>, targetType: string | undefined): string {
  const used = referencedNames(expression, Object.keys(names));
  const bindings = used.length
    ? used.map((name) => `NULL::${names[name]!.type} AS ${quoteIdent(name)}`).join(', ')
    : 'NULL AS _tandem_nothing';
  const value = targetType ? `CAST((${expression}) AS ${targetType})` : `(${expression})`;
  return `SELECT ${value} FROM (SELECT ${bindings} OFFSET 0) AS _tandem_row LIMIT 0`;
}
