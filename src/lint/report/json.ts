/** Findings as one JSON document, for scripts. */
import type { ReportInput } from './index.js';

export function formatJson({ findings, files }: ReportInput): string {
  return `${JSON.stringify({ files, findings }, null, 2)}\n`;
}
