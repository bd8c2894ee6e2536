/**
 * The migration file format: pgroll's, field for field (its published JSON Schema is the
 * reference). These schemas are tandem's own validator; `load.ts` turns their complaints into
 * errors that name the file, the operation and the field.
 *
 * Where pgroll's schema marks `up`/`down` as required but pgroll itself runs fine without them
 * (alter_column, create_constraint, drop_constraint), they are optional here, so existing
 * migration folders load unchanged.
 */
import { z } from 'zod';

const name = z.string().min(1, 'must not be empty');
const sqlExpression = z.string();

export const foreignKeyAction = z.enum(['NO ACTION', 'RESTRICT', 'CASCADE', 'SET NULL', 'SET DEFAULT']);
export const foreignKeyMatchType = z.enum(['SIMPLE', 'FULL', 'PARTIAL']);

export const checkConstraint = z.strictObject({
  name,
  constraint: z.string().min(1, 'must not be empty'),
  no_inherit: z.boolean().optional(),
});

export const foreignKeyReference = z.strictObject({
  name,
  table: name,
  column: name,
  match_type: foreignKeyMatchType.optional(),
  on_delete: foreignKeyAction.optional(),
  on_update: foreignKeyAction.optional(),
  deferrable: z.boolean().optional(),
  initially_deferred: z.boolean().optional(),
});

export const tableForeignKeyReference = z.strictObject({
  table: name,
  columns: z.array(name).min(1, 'must name at least one column'),
  match_type: foreignKeyMatchType.optional(),
  on_delete: foreignKeyAction.optional(),
  on_update: foreignKeyAction.optional(),
  on_delete_set_columns: z.array(name).optional(),
});

export const identity = z.strictObject({
  sequence_options: z.string().optional(),
  user_specified_values: z.enum(['ALWAYS', 'BY DEFAULT']).optional(),
});

export const column = z.strictObject({
  name,
  type: z.string().min(1, 'must not be empty'),
  nullable: z.boolean().optional(),
  pk: z.boolean().optional(),
  unique: z.boolean().optional(),
  default: z.string().optional(),
  check: checkConstraint.optional(),
  references: foreignKeyReference.optional(),
  comment: z.string().optional(),
  generated: z
    .strictObject({
      expression: z.string().optional(),
      identity: identity.optional(),
    })
    .optional(),
});

export const indexParameters = z.strictObject({
  tablespace: z.string().optional(),
  storage_parameters: z.string().optional(),
  include_columns: z.array(name).optional(),
});

export const tableConstraint = z.strictObject({
  name,
  type: z.enum(['unique', 'check', 'primary_key', 'foreign_key', 'exclude']),
  columns: z.array(name).optional(),
  deferrable: z.boolean().optional(),
  initially_deferred: z.boolean().optional(),
  nulls_not_distinct: z.boolean().optional(),
  no_inherit: z.boolean().optional(),
  check: z.string().optional(),
  references: tableForeignKeyReference.optional(),
  exclude: z
    .strictObject({
      index_method: z.string().optional(),
      elements: z.string().optional(),
      predicate: z.string().optional(),
    })
    .optional(),
  index_parameters: indexParameters.optional(),
});

export const indexField = z.strictObject({
  column: name,
  collate: z.string().optional(),
  sort: z.enum(['ASC', 'DESC', '']).optional(),
  nulls: z.enum(['FIRST', 'LAST']).optional(),
  opclass: z
    .strictObject({
      name: z.string().optional(),
      params: z.array(z.string()).optional(),
    })
    .optional(),
});

const multiColumnSql = z.record(z.string(), sqlExpression);

export const operationBodies = {
  create_table: z.strictObject({
    name,
    columns: z.array(column).min(1, 'a table needs at least one column'),
    comment: z.string().optional(),
    constraints: z.array(tableConstraint).optional(),
  }),
  add_column: z.strictObject({
    table: name,
    column,
    up: sqlExpression.optional(),
  }),
  alter_column: z.strictObject({
    table: name,
    column: name,
    type: z.string().min(1).optional(),
    nullable: z.boolean().optional(),
    default: z.string().nullable().optional(),
    check: checkConstraint.optional(),
    unique: z.strictObject({ name }).optional(),
    references: foreignKeyReference.optional(),
    comment: z.string().nullable().optional(),
    up: sqlExpression.optional(),
    down: sqlExpression.optional(),
  }),
  rename_column: z.strictObject({ table: name, from: name, to: name }),
  drop_column: z.strictObject({ table: name, column: name, down: sqlExpression.optional() }),
  rename_table: z.strictObject({ from: name, to: name }),
  drop_table: z.strictObject({ name }),
  create_index: z.strictObject({
    name,
    table: name,
    columns: z.array(indexField).min(1, 'an index needs at least one column'),
    predicate: z.string().optional(),
    method: z.enum(['btree', 'hash', 'gist', 'spgist', 'gin', 'brin']).optional(),
    storage_parameters: z.string().optional(),
    unique: z.boolean().optional(),
  }),
  drop_index: z.strictObject({ name }),
  create_constraint: z.strictObject({
    table: name,
    name,
    type: z.enum(['unique', 'check', 'foreign_key', 'primary_key']),
    columns: z.array(name).optional(),
    check: z.string().optional(),
    no_inherit: z.boolean().optional(),
    index_parameters: indexParameters.optional(),
    references: tableForeignKeyReference.optional(),
    up: multiColumnSql.optional(),
    down: multiColumnSql.optional(),
  }),
  drop_constraint: z.strictObject({
    table: name,
    name,
    up: sqlExpression.optional(),
    down: sqlExpression.optional(),
  }),
  drop_multicolumn_constraint: z.strictObject({
    table: name,
    name,
    up: multiColumnSql.optional(),
    down: multiColumnSql.optional(),
  }),
  rename_constraint: z.strictObject({ table: name, from: name, to: name }),
  set_replica_identity: z.strictObject({
    table: name,
    identity: z.strictObject({
      type: z.string().min(1),
      index: z.string().optional(),
    }),
  }),
  sql: z.strictObject({
    // Empty in the placeholder file pgroll baseline writes, which stands for the schema as it was.
    up: z.string(),
    down: z.string().optional(),
    onComplete: z.boolean().optional(),
  }),
} as const;

export type OperationKind = keyof typeof operationBodies;
export const OPERATION_KINDS = Object.keys(operationBodies) as OperationKind[];

export type OperationBody<K extends OperationKind> = z.infer<(typeof operationBodies)[K]>;

/** One operation: its kind and its body, as parsed from `{ "<kind>": { ... } }`. */
export type Operation = { [K in OperationKind]: { kind: K; body: OperationBody<K> } }[OperationKind];

export type ColumnDefinition = z.infer<typeof column>;
export type TableConstraintDefinition = z.infer<typeof tableConstraint>;
export type ForeignKeyReference = z.infer<typeof foreignKeyReference>;
export type TableForeignKeyReference = z.infer<typeof tableForeignKeyReference>;
export type IndexField = z.infer<typeof indexField>;
export type CheckConstraintDefinition = z.infer<typeof checkConstraint>;

/** A migration, validated and ready for the engine. */
export interface Migration {
  name: string;
  /** The version schema's name when the file sets `version_schema`. */
  versionSchema?: string;
  operations: Operation[];
}

/** The top-level shape before operations are examined one by one. */
export const migrationEnvelope = z.strictObject({
  name: z.string().min(1, 'must not be empty').optional(),
  version_schema: z.string().min(1, 'must not be empty').optional(),
  operations: z.array(z.unknown()),
});
