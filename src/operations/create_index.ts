import type { OperationPlanner } from './types.js';
import { column } from '../core/model.js';
import { renameColumnRefs } from '../core/rewrite.js';
import { derivedIdent, quoteIdent } from '../core/quote.js';
import { TandemError } from '../errors/index.js';
import { createIndexConcurrently, dropIndexConcurrently, tableSql } from '../core/ddl.js';

/** Built CONCURRENTLY, so writes continue; an interrupted build's invalid index is removed before a retry. */
export const createIndex: OperationPlanner<'create_index'> = (body, planner) => {
  const { model } = planner;
  const table = model.table(body.table, 'table');
  // The name of an index of a table dropped earlier in this migration frees up at complete.
  const replacing = model.relationNameTaken(body.name) && model.indexOfDroppedTable(body.name) && !model.physicalTables.has(body.name);
  if (model.relationNameTaken(body.name) && !replacing) {
    throw new TandemError({ kind: 'index_exists', schema: model.schema, name: body.name }, { field: 'name' });
  }
  const columns = body.columns.map((field, i) => column(table, field.column, `columns[${i}].column`));
  let physicalName = body.name;
  if (replacing) {
    physicalName = derivedIdent('_tandem_ix_', body.name);
    while (model.relationNameTaken(physicalName)) physicalName = derivedIdent('_', physicalName);
    planner.renameIndex(physicalName, body.name);
  }
  const unique = body.unique ? 'UNIQUE ' : '';
  const method = body.method && body.method !== 'btree' ? ` USING ${body.method}` : '';
  const storage = body.storage_parameters ? ` WITH (${body.storage_parameters})` : '';
  const origin = planner.origin;
  // Written once every operation is planned: a later one may give a column a shadow (a constraint on
  // it, a type change), and the index belongs on the column the new version keeps, not on the old one
  // that complete drops. An index on a table a later operation drops is not built at all.
  planner.whenPlanned(() => {
    if (!model.visibleTables().includes(table)) return;
    const shadowed = columns.some((c) => c.original !== null && c.physical !== c.original);
    const elements = body.columns.map((field, i) => {
      let sql = quoteIdent(columns[i]!.physical);
      if (field.collate) sql += ` COLLATE ${quoteIdent(field.collate)}`;
      if (field.opclass?.name) {
        sql += ` ${field.opclass.name}`;
        if (field.opclass.params?.length) sql += ` (${field.opclass.params.join(', ')})`;
      }
      if (field.sort) sql += ` ${field.sort}`;
      if (field.nulls) sql += ` NULLS ${field.nulls}`;
      return sql;
    });
    // The predicate names columns as the new version sees them.
    const physical = new Map(table.columns.filter((c) => c.physical !== c.name).map((c) => [c.name, c.physical]));
    const predicate = body.predicate ? ` WHERE (${renameColumnRefs(body.predicate, physical)})` : '';
    const ddlTable = { schema: model.schema, name: table.physical };
    const sql = `CREATE ${unique}INDEX CONCURRENTLY IF NOT EXISTS ${quoteIdent(physicalName)} ON ${tableSql(ddlTable)}${method} (${elements.join(', ')})${storage}${predicate}`;
    // On shadow columns, after the backfill has filled them (as the indexes that follow a shadow are).
    planner.start(shadowed ? 'backfill' : 'constrain', createIndexConcurrently(ddlTable, physicalName, sql, `create index ${body.name} concurrently`, { origin }));
  });
  planner.rollback(dropIndexConcurrently(model.schema, physicalName, `drop index ${body.name}`));
  model.addIndex(physicalName);
  model.addIndex(body.name);
  planner.expect({ kind: 'index', table, name: body.name, columns });
};
