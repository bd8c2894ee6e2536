/** SQL fragments several operations write the same way: column definitions and constraint clauses. */
import type { ColumnDefinition, ForeignKeyReference, TableForeignKeyReference, TableConstraintDefinition } from '../migration/format.js';
import { column, type SchemaModel } from './model.js';
import { qualified, quoteIdent } from './quote.js';
import { TandemError } from '../errors/index.js';

/** A referenced table: a table the new version sees (by its visible name), or `schema.table` outside. */
export function referencedTable(model: SchemaModel, name: string, field: string): { sql: string; physicalColumn: (visible: string, field: string) => string } {
  const table = model.findTable(name);
  if (table) {
    return {
      sql: qualified(model.schema, table.physical),
      physicalColumn: (visible, columnField) => column(table, visible, columnField).physical,
    };
  }
  const dot = name.indexOf('.');
  if (dot > 0) {
    return { sql: qualified(name.slice(0, dot), name.slice(dot + 1)), physicalColumn: (visible) => visible };
  }
  return { sql: qualified(model.schema, model.table(name, field).physical), physicalColumn: (v) => v };
}

export function foreignKeyActions(reference: { match_type?: string; on_delete?: string; on_update?: string }): string {
  const parts: string[] = [];
  if (reference.match_type && reference.match_type !== 'SIMPLE') parts.push(`MATCH ${reference.match_type}`);
  if (reference.on_delete && reference.on_delete !== 'NO ACTION') parts.push(`ON DELETE ${reference.on_delete}`);
  if (reference.on_update && reference.on_update !== 'NO ACTION') parts.push(`ON UPDATE ${reference.on_update}`);
  return parts.length ? ` ${parts.join(' ')}` : '';
}

export function deferrable(options: { deferrable?: boolean; initially_deferred?: boolean }): string {
  if (options.initially_deferred) return ' DEFERRABLE INITIALLY DEFERRED';
  return options.deferrable ? ' DEFERRABLE' : '';
}

/** `CONSTRAINT name FOREIGN KEY (col) REFERENCES t (col) …` for a column-level reference. */
export function columnForeignKeySql(model: SchemaModel, physicalColumn: string, reference: ForeignKeyReference, field: string): string {
  return `CONSTRAINT ${quoteIdent(reference.name)} ${columnForeignKeyBody(model, physicalColumn, reference, field)}`;
}

/** `FOREIGN KEY (col) REFERENCES t (col) …`, without the constraint name. */
export function columnForeignKeyBody(model: SchemaModel, physicalColumn: string, reference: ForeignKeyReference, field: string): string {
  const target = referencedTable(model, reference.table, `${field}.table`);
  const targetColumn = target.physicalColumn(reference.column, `${field}.column`);
  return `FOREIGN KEY (${quoteIdent(physicalColumn)}) REFERENCES ${target.sql} (${quoteIdent(targetColumn)})${foreignKeyActions(reference)}${deferrable(reference)}`;
}

export function tableForeignKeySql(
  model: SchemaModel,
  name: string,
  physicalColumns: string[],
  reference: TableForeignKeyReference,
  options: { deferrable?: boolean; initially_deferred?: boolean },
  field: string,
): string {
  return `CONSTRAINT ${quoteIdent(name)} ${tableForeignKeyBody(model, physicalColumns, reference, options, field)}`;
}

/** `FOREIGN KEY (cols) REFERENCES t (cols) …`, without the constraint name. */
export function tableForeignKeyBody(
  model: SchemaModel,
  physicalColumns: string[],
  reference: TableForeignKeyReference,
  options: { deferrable?: boolean; initially_deferred?: boolean },
  field: string,
): string {
  const target = referencedTable(model, reference.table, `${field}.table`);
  const targetColumns = reference.columns.map((c, i) => target.physicalColumn(c, `${field}.columns[${i}]`));
  let actions = foreignKeyActions({ ...reference, on_delete: undefined });
  if (reference.on_delete && reference.on_delete !== 'NO ACTION') {
    const setColumns = reference.on_delete_set_columns?.length ? ` (${reference.on_delete_set_columns.map(quoteIdent).join(', ')})` : '';
    actions += ` ON DELETE ${reference.on_delete}${setColumns}`;
  }
  return `FOREIGN KEY (${physicalColumns.map(quoteIdent).join(', ')}) REFERENCES ${target.sql} (${targetColumns.map(quoteIdent).join(', ')})${actions}${deferrable(options)}`;
}

export function checkSql(name: string, expression: string, noInherit?: boolean): string {
  return `CONSTRAINT ${quoteIdent(name)} ${checkBody(expression, noInherit)}`;
}

export function checkBody(expression: string, noInherit?: boolean): string {
  return `CHECK (${expression})${noInherit ? ' NO INHERIT' : ''}`;
}

export function indexParametersSql(parameters: TableConstraintDefinition['index_parameters']): string {
  if (!parameters) return '';
  let sql = '';
  if (parameters.include_columns?.length) sql += ` INCLUDE (${parameters.include_columns.map(quoteIdent).join(', ')})`;
  if (parameters.storage_parameters) sql += ` WITH (${parameters.storage_parameters})`;
  if (parameters.tablespace) sql += ` USING INDEX TABLESPACE ${quoteIdent(parameters.tablespace)}`;
  return sql;
}

/** Generated-column and identity clauses; an identity column is NOT NULL by definition. */
export function generatedSql(definition: ColumnDefinition): string {
  const generated = definition.generated;
  if (!generated) return '';
  if (generated.expression && generated.identity) {
    throw new TandemError({ kind: 'column_generated' }, { field: 'generated' });
  }
  if (generated.expression) return ` GENERATED ALWAYS AS (${generated.expression}) STORED`;
  if (generated.identity) {
    const mode = generated.identity.user_specified_values ?? 'ALWAYS';
    const options = generated.identity.sequence_options ? ` (${generated.identity.sequence_options})` : '';
    return ` GENERATED ${mode} AS IDENTITY${options}`;
  }
  return '';
}

export function isIdentity(definition: ColumnDefinition): boolean {
  return Boolean(definition.generated?.identity);
}
