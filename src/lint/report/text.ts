/** Findings for people: `file:line:col`, the rule, the source line with a caret, why and what to do. */
import type { Finding } from '../types.js';
import type { ReportInput } from './index.js';

interface Paint {
  red(text: string): string;
  yellow(text: string): string;
  bold(text: string): string;
  dim(text: string): string;
}

const plain: Paint = { red: (t) => t, yellow: (t) => t, bold: (t) => t, dim: (t) => t };
const ansi: Paint = {
  red: (t) => `\x1b[31m${t}\x1b[39m`,
  yellow: (t) => `\x1b[33m${t}\x1b[39m`,
  bold: (t) => `\x1b[1m${t}\x1b[22m`,
  dim: (t) => `\x1b[2m${t}\x1b[22m`,
};

export function formatText({ findings, files, lines, color }: ReportInput): string {
  const paint = color ? ansi : plain;
  const out: string[] = [];
  for (const finding of findings) {
    const level = finding.severity === 'error' ? paint.red('error') : paint.yellow('warning');
    out.push(`${paint.bold(`${finding.file}:${finding.line}:${finding.column}`)}: ${level} ${paint.bold(finding.rule)}: ${finding.message}`);
    const line = lines(finding);
    if (line !== undefined) {
      out.push(paint.dim(`  ${String(finding.line).padStart(4)} | `) + line);
      const lead = line.slice(0, caretOffset(line, finding.column)).replace(/[^\t]/g, ' ');
      out.push(paint.dim('       | ') + lead + paint.red('^'));
    }
    out.push(`  why: ${finding.why}`);
    out.push(`  fix: ${finding.fix}`);
    out.push('');
  }
  out.push(summary(findings, files));
  return `${out.join('\n')}\n`;
}

/** Tabs stay tabs so the caret lines up under the same characters. */
function caretOffset(line: string, column: number): number {
  return Math.max(0, Math.min(column - 1, line.length));
}

function summary(findings: readonly Finding[], files: number): string {
  const checked = `${files} file${files === 1 ? '' : 's'} checked`;
  if (!findings.length) return `no problems found (${checked})`;
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.length - errors;
  return `${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'} (${checked})`;
}
