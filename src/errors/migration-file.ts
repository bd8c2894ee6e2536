/** What is wrong with a migration file or a folder of them, found while loading them. */
export type MigrationFileFact =
  | { kind: 'migration_file_type'; extension: string }
  | { kind: 'migration_file_unreadable'; errno?: string }
  | { kind: 'migration_file_too_large'; bytes: number; maxBytes: number }
  | { kind: 'migration_unloadable'; reason: string }
  | { kind: 'migration_syntax'; format: 'json' | 'yaml'; reason: string; line?: number; column?: number }
  | { kind: 'migration_too_many_operations'; count: number; max: number }
  | { kind: 'migration_empty' }
  | { kind: 'migration_name_invalid'; value: string; source: 'name' | 'file name' | 'version_schema'; character: string; position: number; why: string }
  /** `keys`: the keys the operation has, when it is an object at all. */
  | { kind: 'operation_shape'; keys?: string[] }
  | { kind: 'operation_unknown'; name: string; suggestion?: string; known: readonly string[] }
  /** A validator's sentence about one field: the field is the error's location. */
  | { kind: 'migration_invalid'; message: string }
  | { kind: 'review_placeholder'; value: string; line?: number; more: number; moreLines: number[] }
  | { kind: 'migration_duplicate'; name: string; files: [string, string] }
  | { kind: 'folder_unreadable'; dir: string; errno?: string }
  | HistoryMismatch;

/** The applied history and the folder disagree, in one of four ways. */
export type HistoryMismatch =
  | { kind: 'history_mismatch'; problem: 'file_missing'; name: string }
  | { kind: 'history_mismatch'; problem: 'sorts_elsewhere'; name: string; appliedAs: number; sortsAs: number; before: string }
  | { kind: 'history_mismatch'; problem: 'other_file'; name: string; appliedAs: number; found: string }
  | { kind: 'history_mismatch'; problem: 'changed'; name: string };
