import type { OperationPlanner } from './types.js';
import { column } from '../engine/model.js';
import { sqlStep } from '../engine/plan.js';
import { qualified, quoteIdent } from '../engine/sql.js';
import { TandemError } from '../errors.js';
import { dropInvalidIndexSql } from '../engine/shadow.js';

/** Built CONCURRENTLY, so writes continue; an interrupted build's invalid index is removed before a retry. */
export const createIndex: OperationPlanner<'create_index'> = (body, planner) => {
  const { model } = planner;
  const table = model.table(body.table, 'table');
  if (model.relationNameTaken(body.name)) {
    throw new TandemError('index_exists', `a table or index named "${body.name}" already exists in schema "${model.schema}"`, { field: 'name' });
  }
  const elements = body.columns.map((field, i) => {
    let sql = quoteIdent(column(table, field.column, `columns[${i}].column`).physical);
    if (field.collate) sql += ` COLLATE ${quoteIdent(field.collate)}`;
    if (field.opclass?.name) {
      sql += ` ${field.opclass.name}`;
      if (field.opclass.params?.length) sql += ` (${field.opclass.params.join(', ')})`;
    }
    if (field.sort) sql += ` ${field.sort}`;
    if (field.nulls) sql += ` NULLS ${field.nulls}`;
    return sql;
  });
  const unique = body.unique ? 'UNIQUE ' : '';
  const method = body.method && body.method !== 'btree' ? ` USING ${body.method}` : '';
  const storage = body.storage_parameters ? ` WITH (${body.storage_parameters})` : '';
  const predicate = body.predicate ? ` WHERE (${body.predicate})` : '';
  const tableSql = qualified(model.schema, table.physical);
  planner.start(
    'constrain',
    sqlStep(
      `create index ${body.name} concurrently`,
      `CREATE ${unique}INDEX CONCURRENTLY IF NOT EXISTS ${quoteIdent(body.name)} ON ${tableSql}${method} (${elements.join(', ')})${storage}${predicate}`,
      { transactional: false, cleanup: [dropInvalidIndexSql(model.schema, body.name)], lockTarget: `${model.schema}.${table.physical}` },
    ),
  );
  planner.rollback(sqlStep(`drop index ${body.name}`, `DROP INDEX CONCURRENTLY IF EXISTS ${qualified(model.schema, body.name)}`, { transactional: false }));
  model.indexNames.add(body.name);
};
