/** Runs the rules over SQL text, statement by statement, and turns their problems into findings. */
import { readDirectives, isDisabled } from './directives.js';
import { parseSql, SqlSyntaxError, type ParsedSql } from '../sqlparse/parse.js';
import { INVALID_DIRECTIVE, RULE_NAMES, RULES, SYNTAX_ERROR } from './rules/index.js';
import { LintState } from './state.js';
import type { Finding, LintOptions, Problem, Rule } from './types.js';

export const DEFAULT_LINT_OPTIONS: LintOptions = { pgVersion: 14, assumeInTransaction: false, disabled: new Set() };

export async function lintSql(text: string, file: string, options: LintOptions = DEFAULT_LINT_OPTIONS): Promise<Finding[]> {
  let parsed: ParsedSql;
  try {
    parsed = await parseSql(text, file);
  } catch (error) {
    if (!(error instanceof SqlSyntaxError)) throw error;
    return [
      {
        rule: SYNTAX_ERROR,
        severity: 'error',
        file,
        ...error.position,
        message: error.reason,
        why: 'PostgreSQL cannot parse this file, so it cannot run it either (and no other rule could check it).',
        fix: 'Fix the SQL at the position shown; psql meta-commands such as \\set are not SQL and cannot be linted.',
      },
    ];
  }
  return lintParsed(parsed, options);
}

export function lintParsed(parsed: ParsedSql, options: LintOptions): Finding[] {
  const directives = readDirectives(parsed, RULE_NAMES);
  const findings: Finding[] = directives.problems.map(({ at, message }) => ({
    rule: INVALID_DIRECTIVE,
    severity: 'error',
    file: parsed.file,
    ...parsed.source.positionOfByte(at),
    message,
    why: 'A misspelt disable comment silently disables nothing.',
    fix: `Name rules exactly as \`tandem lint --list-rules\` prints them.`,
  }));
  const state = new LintState(options.assumeInTransaction);
  const reported = new Set<string>();
  parsed.statements.forEach((statement, index) => {
    for (const rule of RULES) {
      if (options.disabled.has(rule.name) || isDisabled(directives, index, rule.name)) continue;
      const problems = rule.check({
        parsed,
        statement,
        options,
        state,
        once(key) {
          const full = `${rule.name}\0${key}`;
          if (reported.has(full)) return false;
          reported.add(full);
          return true;
        },
      });
      for (const problem of problems) findings.push(toFinding(parsed, rule, problem, statement.start));
    }
    state.after(statement.node);
  });
  return findings.sort((a, b) => a.line - b.line || a.column - b.column || a.rule.localeCompare(b.rule));
}

function toFinding(parsed: ParsedSql, rule: Rule, problem: Problem, statementStart: number): Finding {
  return {
    rule: rule.name,
    severity: rule.severity,
    file: parsed.file,
    ...parsed.source.positionOfByte(problem.at ?? statementStart),
    message: problem.message,
    why: rule.why,
    fix: problem.fix ?? rule.fix,
  };
}
