/** Findings as SARIF 2.1.0, the format code-scanning services (GitHub, GitLab, IDEs) import. */
import { RULES, INVALID_DIRECTIVE, SYNTAX_ERROR } from '../rules/index.js';
import type { ReportInput } from './index.js';

const SARIF_SCHEMA = 'https://json.schemastore.org/sarif-2.1.0.json';

export function formatSarif({ findings, version }: ReportInput): string {
  const rules = [
    ...RULES.map((rule) => ({ id: rule.name, text: rule.summary, why: rule.why, fix: rule.fix, level: rule.severity })),
    { id: SYNTAX_ERROR, text: 'the file is not valid SQL', why: 'PostgreSQL cannot parse it.', fix: 'Fix the SQL at the position shown.', level: 'error' as const },
    { id: INVALID_DIRECTIVE, text: 'a disable comment names an unknown rule', why: 'It disables nothing.', fix: 'Use an exact rule name.', level: 'error' as const },
  ];
  const document = {
    $schema: SARIF_SCHEMA,
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'tandem lint',
            version,
            rules: rules.map((rule) => ({
              id: rule.id,
              shortDescription: { text: rule.text },
              fullDescription: { text: rule.why },
              help: { text: rule.fix },
              defaultConfiguration: { level: rule.level },
            })),
          },
        },
        columnKind: 'utf16CodeUnits',
        results: findings.map((finding) => ({
          ruleId: finding.rule,
          ruleIndex: rules.findIndex((rule) => rule.id === finding.rule),
          level: finding.severity,
          message: { text: `${finding.message}. ${finding.why} Fix: ${finding.fix}` },
          locations: [
            {
              physicalLocation: {
                artifactLocation: { uri: finding.file.split('\\').join('/') },
                region: { startLine: finding.line, startColumn: finding.column },
              },
            },
          ],
        })),
      },
    ],
  };
  return `${JSON.stringify(document, null, 2)}\n`;
}
