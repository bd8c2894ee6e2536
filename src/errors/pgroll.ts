/** What refuses moving a pgroll user's files, commands and database over to tandem. */
export type PgrollFact =
  | { kind: 'more_than_one_pending'; names: string[] }
  | { kind: 'pgroll_state_missing'; pgrollSchema: string }
  | { kind: 'pgroll_migration_active'; name: string; schema: string }
  | { kind: 'pgroll_history_broken'; name: string; parent: string | null }
  | { kind: 'pgroll_import_conflict'; stateSchema: string; schema: string; applied: number };
