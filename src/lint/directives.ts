/**
 * Disable comments in SQL files:
 *   -- tandem-lint-disable rule-a, rule-b      the next statement (all rules when none are named)
 *   -- tandem-lint-disable-file rule-a         the whole file (all rules when none are named)
 * Text after a second `--` is a free-form reason. Block comments work the same way.
 */
import type { ParsedSql } from '../sqlparse/parse.js';

export const ALL_RULES = '*';

export interface Directives {
  /** Rules off for the whole file (`*` for all). */
  file: Set<string>;
  /** Rules off per statement index. */
  statements: Map<number, Set<string>>;
  /** Malformed directives and unknown rule names, with the byte offset of their comment. */
  problems: { at: number; message: string }[];
}

const DIRECTIVE = /^tandem-lint-([a-z-]*)(.*)$/s;

export function readDirectives(parsed: ParsedSql, knownRules: readonly string[]): Directives {
  const directives: Directives = { file: new Set(), statements: new Map(), problems: [] };
  for (const token of parsed.tokens) {
    if (!token.comment) continue;
    const body = token.text.startsWith('--') ? token.text.slice(2) : token.text.slice(2, -2);
    const match = DIRECTIVE.exec(body.trim());
    if (!match) continue;
    const [, verb, rest] = match as unknown as [string, string, string];
    if (verb !== 'disable' && verb !== 'disable-file') {
      directives.problems.push({ at: token.start, message: `unknown directive "tandem-lint-${verb}" (use tandem-lint-disable or tandem-lint-disable-file)` });
      continue;
    }
    const names = rest.split('--')[0]!.split(/[\s,]+/).filter(Boolean);
    const unknown = names.filter((name) => !knownRules.includes(name));
    if (unknown.length) {
      directives.problems.push({ at: token.start, message: `unknown rule${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `"${n}"`).join(', ')} in a disable comment` });
    }
    const rules = names.length ? names.filter((name) => knownRules.includes(name)) : [ALL_RULES];
    if (verb === 'disable-file') {
      for (const rule of rules) directives.file.add(rule);
      continue;
    }
    // The statement the comment precedes or sits inside: the first that ends after it.
    const index = parsed.statements.findIndex((statement) => statement.end > token.start);
    if (index < 0) continue;
    const set = directives.statements.get(index) ?? new Set<string>();
    for (const rule of rules) set.add(rule);
    directives.statements.set(index, set);
  }
  return directives;
}

export function isDisabled(directives: Directives, statementIndex: number, rule: string): boolean {
  const forStatement = directives.statements.get(statementIndex);
  return (
    directives.file.has(ALL_RULES) || directives.file.has(rule) || forStatement?.has(ALL_RULES) === true || forStatement?.has(rule) === true
  );
}
