/** The live schema as pg_catalog describes it, in plain objects. Names here are physical names. */

export interface ColumnInfo {
  name: string;
  /** format_type() output, e.g. `character varying(255)`. */
  type: string;
  nullable: boolean;
  /** pg_get_expr() of the default, or null. */
  default: string | null;
  /** 'a' GENERATED ALWAYS AS IDENTITY, 'd' BY DEFAULT, '' none. */
  identity: '' | 'a' | 'd';
  /** 's' for a stored generated column, '' otherwise. */
  generated: '' | 's';
  comment: string | null;
  /** The sequence behind an identity or serial column, schema-qualified and quoted, else null. */
  sequence: string | null;
}

export type ConstraintType = 'primary_key' | 'unique' | 'check' | 'foreign_key' | 'exclude' | 'not_null';

export interface ConstraintInfo {
  name: string;
  type: ConstraintType;
  columns: string[];
  /** pg_get_constraintdef() */
  definition: string;
  validated: boolean;
  /** For foreign keys: the referenced table (schema-qualified if outside the schema) and columns. */
  referencedTable?: string;
  referencedColumns?: string[];
  /** The index behind a primary key, unique or exclusion constraint. */
  indexName?: string;
}

export interface IndexInfo {
  name: string;
  /** Plain column names; null entries are expressions. */
  columns: (string | null)[];
  unique: boolean;
  primary: boolean;
  valid: boolean;
  partial: boolean;
  replicaIdentity: boolean;
  definition: string;
  /** The constraint this index implements, if any. */
  constraint: string | null;
}

export interface TableInfo {
  oid: number;
  name: string;
  columns: ColumnInfo[];
  constraints: ConstraintInfo[];
  indexes: IndexInfo[];
  comment: string | null;
  /** 'd' default, 'n' nothing, 'f' full, 'i' index. */
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  /** pg_class.reltuples: -1 when never vacuumed or analyzed. */
  estimatedRows: number;
  partitioned: boolean;
  /** Privileges granted on the table to roles other than its owner, copied onto version views. */
  grants: Grant[];
  /** Foreign keys of other tables (any schema) that reference this one. */
  inboundForeignKeys: InboundForeignKey[];
}

export interface InboundForeignKey {
  /** The referencing table, schema-qualified and quoted. */
  table: string;
  /** The referencing table's oid, to find it in the model. */
  tableOid: number;
  name: string;
  columns: string[];
  /** Columns of this table it references. */
  referencedColumns: string[];
  /** pg_get_constraintdef() */
  definition: string;
}

export interface Grant {
  /** A role name, or PUBLIC. */
  grantee: string;
  privilege: string;
}

export interface SchemaInfo {
  name: string;
  tables: Map<string, TableInfo>;
  /** Index names in the schema (indexes share the namespace with tables). */
  indexNames: Set<string>;
  serverVersionNum: number;
  /** USAGE grants on the schema itself, copied onto version schemas. */
  usageGrantees: string[];
}

export function primaryKeyOf(table: TableInfo): string[] {
  return table.constraints.find((c) => c.type === 'primary_key')?.columns ?? [];
}
