/** What goes wrong around the engine: usage, connections, the proxy's listeners, lint and convert. */
export type ToolFact =
  /** Bad flags or arguments (exit status 2): the sentence is the fact. */
  | { kind: 'usage'; message: string }
  | { kind: 'connect_failed'; address: string; reason: string }
  | { kind: 'listen_failed'; address: string; flag: string; reason: string }
  | { kind: 'lint_findings'; count: number }
  | { kind: 'lint_unreadable'; errno?: string }
  /** `position`: where in the file; without it, the parser itself failed. */
  | { kind: 'sql_syntax'; reason: string; position?: { line: number; column: number } }
  | { kind: 'convert_empty'; source: 'file' | 'folder' }
  | { kind: 'convert_invalid'; name: string; reason: string }
  | ConvertUnreadable;

export type ConvertUnreadable =
  | { kind: 'convert_unreadable'; problem: 'file' | 'folder'; errno?: string }
  | { kind: 'convert_unreadable'; problem: 'journal_lists_missing'; files: string[] }
  | { kind: 'convert_unreadable'; problem: 'journal_not_json'; reason: string }
  | { kind: 'convert_unreadable'; problem: 'journal_shape' };
