import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { TandemError, UsageError } from '../../errors/index.js';
import { collectSqlFiles } from '../../lint/files.js';
import { lintSql } from '../../lint/lint.js';
import { formatReport, REPORT_FORMATS, type ReportFormat } from '../../lint/report/index.js';
import { RULE_NAMES, RULES } from '../../lint/rules/index.js';
import { SourceText } from '../../sqlparse/source.js';
import type { Finding } from '../../lint/types.js';
import { closest } from '../../migration/suggest.js';
import { writeLine, type CliIO } from '../io.js';

interface LintFlags {
  format: ReportFormat;
  disable: string[];
  pgVersion: number;
  assumeInTransaction?: boolean;
  listRules?: boolean;
}

export function registerLint(program: Command, io: CliIO): void {
  program
    .command('lint')
    .description('flag unsafe DDL in plain SQL migrations (files, or directories searched for *.sql)')
    .argument('[paths...]', 'SQL files or directories')
    .addOption(new Option('--format <format>', 'output format').choices(REPORT_FORMATS).default('text'))
    .option('--disable <rules>', 'comma-separated rules to switch off', parseRuleList, [])
    .option('--pg-version <major>', 'PostgreSQL version the migrations run on (some rules depend on it)', parsePgVersion, 14)
    .option('--assume-in-transaction', 'treat each file as wrapped in BEGIN ... COMMIT, as many migration runners do')
    .option('--list-rules', 'print every rule and exit')
    .action(async (paths: string[], flags: LintFlags, command: Command) => {
      if (flags.listRules) {
        for (const rule of RULES) writeLine(io.stdout, `${rule.name.padEnd(38)} ${rule.severity.padEnd(8)} ${rule.summary}`);
        return;
      }
      if (paths.length === 0) throw new UsageError('name at least one SQL file or directory', 'e.g. tandem lint migrations/');
      const files = await collectSqlFiles(paths);
      if (files.length === 0) writeLine(io.stderr, `tandem lint: no .sql files found in ${paths.join(', ')}`);
      const options = { pgVersion: flags.pgVersion, assumeInTransaction: flags.assumeInTransaction === true, disabled: new Set(flags.disable) };
      const sources = new Map<string, SourceText>();
      const findings: Finding[] = [];
      for (const file of files) {
        const text = await readSql(file);
        sources.set(file, new SourceText(text));
        findings.push(...(await lintSql(text, file, options)));
      }
      const stdout = io.stdout as NodeJS.WritableStream & { isTTY?: boolean };
      const color = stdout.isTTY === true && !process.env.NO_COLOR;
      io.stdout.write(
        formatReport(flags.format, {
          findings,
          files: files.length,
          lines: (finding) => sources.get(finding.file)?.lineText(finding.line),
          color,
          version: command.parent?.version() ?? '',
        }),
      );
      // Findings mean the check failed: exit status 1, with a one-line count on stderr.
      if (findings.length) throw new LintFailed(findings.length);
    });
}

/** The check found problems; the report on stdout has the details. */
export class LintFailed extends TandemError {
  constructor(count: number) {
    super({ kind: 'lint_findings', count });
  }
}

async function readSql(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new TandemError({ kind: 'lint_unreadable', errno: (error as NodeJS.ErrnoException).code }, { file });
  }
}

function parseRuleList(value: string, previous: string[]): string[] {
  const names = value.split(',').map((name) => name.trim()).filter(Boolean);
  for (const name of names) {
    if (!RULE_NAMES.includes(name)) {
      const suggestion = closest(name, RULE_NAMES);
      throw new InvalidArgumentError(`unknown rule "${name}"${suggestion ? ` (did you mean "${suggestion}"?)` : ''}; tandem lint --list-rules prints them`);
    }
  }
  return [...previous, ...names];
}

function parsePgVersion(value: string): number {
  const version = Number(value);
  if (!/^\d+(\.\d)?$/.test(value) || version < 9 || version > 99) {
    throw new InvalidArgumentError(`--pg-version must be a PostgreSQL major version such as 14 (or 9.6), got "${value}"`);
  }
  return version;
}
