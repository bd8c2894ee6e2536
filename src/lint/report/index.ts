/** One entry point for every output format of `tandem lint`. */
import type { Finding } from '../types.js';
import { formatGithub } from './github.js';
import { formatJson } from './json.js';
import { formatSarif } from './sarif.js';
import { formatText } from './text.js';

export const REPORT_FORMATS = ['text', 'json', 'sarif', 'github'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

export interface ReportInput {
  findings: readonly Finding[];
  /** How many files were checked. */
  files: number;
  /** The source line a finding points at, for the text format's excerpt. */
  lines: (finding: Finding) => string | undefined;
  color: boolean;
  /** tandem's version, for SARIF's tool description. */
  version: string;
}

export function formatReport(format: ReportFormat, input: ReportInput): string {
  switch (format) {
    case 'text':
      return formatText(input);
    case 'json':
      return formatJson(input);
    case 'sarif':
      return formatSarif(input);
    case 'github':
      return formatGithub(input);
  }
}
