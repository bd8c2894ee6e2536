/**
 * What goes wrong while a migration is planned: an operation names something the schema does not
 * have, or asks for something the schema or PostgreSQL cannot do. Each kind carries its facts;
 * messages.ts turns them into words.
 */
export type PlanningFact =
  | { kind: 'table_unknown'; schema: string; table: string; known: string[] }
  /** `newTable`: the column is missing from the columns of the table being created, not from the schema. */
  | { kind: 'column_unknown'; table: string; column: string; known: string[]; newTable?: boolean }
  | { kind: 'column_exists'; table: string; column: string }
  | { kind: 'column_duplicate'; column: string }
  | { kind: 'column_generated' }
  | { kind: 'table_exists'; schema: string; name: string }
  | { kind: 'index_exists'; schema: string; name: string }
  | { kind: 'index_unknown'; schema: string; index: string }
  | { kind: 'index_is_constraint'; index: string; constraint: string; table: string }
  | { kind: 'constraint_exists'; table: string; constraint: string }
  | { kind: 'constraint_unknown'; table: string; constraint: string; known: string[] }
  | { kind: 'constraint_columns'; type: string }
  /** `constraint` is there when the constraint already exists, and its columns are known. */
  | { kind: 'constraint_sql_column'; column: string; constraint?: { name: string; columns: string[] } }
  | { kind: 'constraint_references' }
  | { kind: 'constraint_check' }
  | { kind: 'constraint_exclude' }
  | { kind: 'constraint_multicolumn'; constraint: string; columns: string[] }
  | { kind: 'constraint_referenced'; constraint: string; foreignKeys: { name: string; table: string }[] }
  | { kind: 'primary_key_exists'; table: string; columns: string[] }
  | { kind: 'primary_key_twice' }
  | { kind: 'replica_identity_type'; identity: string; known: readonly string[] }
  | { kind: 'replica_identity_index' }
  | { kind: 'alter_column_empty'; table: string; column: string; changes: readonly string[] }
  | { kind: 'alter_generated'; column: string }
  | { kind: 'add_column_pk' }
  | { kind: 'add_column_not_null'; column: string }
  | { kind: 'sql_not_isolated' }
  /** `type`: the SQL type the expression was probed as, when it was probed alone. */
  | { kind: 'expression_invalid'; reason: string; type?: string }
  | { kind: 'planning_database_error'; reason: string }
  | { kind: 'planning_internal_error'; reason: string }
  /** `table`: the relation the step locks, when the step names one. */
  | { kind: 'lock_timeout'; step: string; table?: string; lockTimeoutMs: number; attempts: number; holders: LockHolder[] };

export interface LockHolder {
  pid: number;
  mode: string;
  state: string | null;
  query: string | null;
}
