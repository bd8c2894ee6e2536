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
 * Both tests read only NEW/OLD and the session's search_path, so the trigger never recurses and never
 * applies a pair twice, whichever way a write arrives (proxy, version view, plain search_path).
 */
import type { NameBinding } from './model.js';
import { qualified, quoteIdent, quoteLiteral } from './sql.js';

export interface SyncRule {
  description: string;
  /** The physical column the old version writes (absent for columns new in this migration). */
  oldColumn?: string;
  /** The physical column the new version writes (absent for columns it no longer sees). */
  newColumn?: string;
  /** Computes the new column from the old version's columns. */
  up?: string;
  /** Apply `up` only where the new column is still NULL (a volatile default filling existing rows). */
  fillOnly?: boolean;
  /** Computes the old column from the new version's columns. */
  down?: string;
  /** Names `up` may use, mapped to physical columns (the old version's view of the row). */
  upNames: Record<string, NameBinding>;
  /** Names `down` may use, mapped to physical columns (the new version's view of the row). */
  downNames: Record<string, NameBinding>;
  /** Types of the target columns, for validating the expressions before anything runs. */
  oldType?: string;
  newType?: string;
  /** The operation the rule came from, for error messages. */
  origin?: { operation: number; kind: string };
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

export const SYNC_TRIGGER_NAME = '_tandem_sync';

export function createSyncTriggerSql(trigger: SyncTrigger): string[] {
  const fn = qualified(trigger.functionSchema, trigger.functionName);
  const table = qualified(trigger.schema, trigger.table);
  const blocks = trigger.rules.map((rule) => ruleBlock(rule, trigger)).join('\n');
  const functionSql = `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger
LANGUAGE plpgsql AS $tandem$
#variable_conflict use_column
DECLARE
  -- The new version's clients have its schema first on their search_path (the proxy sets it).
  _tandem_from_new boolean := (pg_catalog.current_schemas(false))[1] IS NOT DISTINCT FROM ${quoteLiteral(trigger.versionSchema)};
  _tandem_direction text;
BEGIN
${blocks}
  RETURN NEW;
END
$tandem$`;
  const triggerSql = `CREATE OR REPLACE TRIGGER ${quoteIdent(trigger.triggerName)}
  BEFORE INSERT OR UPDATE ON ${table}
  FOR EACH ROW EXECUTE FUNCTION ${fn}()`;
  return [functionSql, triggerSql];
}

export function dropSyncTriggerSql(trigger: Pick<SyncTrigger, 'schema' | 'table' | 'functionSchema' | 'functionName' | 'triggerName'>): string[] {
  return [
    `DROP TRIGGER IF EXISTS ${quoteIdent(trigger.triggerName)} ON ${qualified(trigger.schema, trigger.table)}`,
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
  if (rule.up !== undefined && n) {
    const when = rule.fillOnly ? ` AND ${n} IS NULL` : '';
    lines.push(`  IF _tandem_direction = 'up'${when} THEN`, assignment(n, rule.up, rule.upNames, trigger), `  END IF;`);
  }
  if (rule.down !== undefined && o) {
    lines.push(`  IF _tandem_direction = 'down' THEN`, assignment(o, rule.down, rule.downNames, trigger), `  END IF;`);
  }
  return lines.join('\n');
}

/** A nested block that binds the row's columns to the names the expression uses, then assigns. */
function assignment(target: string, expression: string, names: Record<string, NameBinding>, trigger: SyncTrigger): string {
  const used = referencedNames(expression, Object.keys(names));
  const declarations = used.map((name) => {
    const column = quoteIdent(names[name]!.column);
    return `      ${quoteIdent(name)} ${qualified(trigger.schema, trigger.table)}.${column}%TYPE := NEW.${column};`;
  });
  return [
    `    DECLARE`,
    ...declarations,
    `    BEGIN`,
    `      ${target} := (${expression});`,
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
