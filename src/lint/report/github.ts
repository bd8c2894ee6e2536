/**
 * Findings as GitHub Actions workflow commands (`::error file=...,line=...::message`): a step that
 * prints them gets each finding annotated on the pull request's diff.
 */
import type { ReportInput } from './index.js';

export function formatGithub({ findings }: ReportInput): string {
  return findings
    .map((finding) => {
      const properties = [
        `file=${escapeProperty(finding.file)}`,
        `line=${finding.line}`,
        `col=${finding.column}`,
        `title=${escapeProperty(`tandem lint: ${finding.rule}`)}`,
      ].join(',');
      const message = `${finding.message}\n${finding.why}\nFix: ${finding.fix}`;
      return `::${finding.severity === 'error' ? 'error' : 'warning'} ${properties}::${escapeData(message)}\n`;
    })
    .join('');
}

// The escaping GitHub's runner undoes: data may not carry raw newlines; properties also not `:` or `,`.
function escapeData(text: string): string {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function escapeProperty(text: string): string {
  return escapeData(text).replace(/:/g, '%3A').replace(/,/g, '%2C');
}
