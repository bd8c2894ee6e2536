/**
 * What a migration creates and must still be there after complete: its tables, columns, constraints
 * and indexes, under their final names. Operations say what they create while they are planned; the
 * list is read from the finished model (a later operation may rename or drop what an earlier one
 * created) and stored in the plan, so a resumed complete checks the same things (see verify.ts).
 */
import type { ModelColumn, ModelConstraint, ModelTable, SchemaModel } from './model.js';
import type { ExpectedObject, StepOrigin } from './steps.js';

export interface PendingExpectation {
  kind: ExpectedObject['kind'];
  table: ModelTable;
  /** A column, or the column a constraint outside the model belongs to (it goes when the column goes). */
  column?: ModelColumn;
  /** A constraint the model tracks: its final name is whatever it has when planning ends. */
  constraint?: ModelConstraint;
  /** The name of an index, or of a constraint the model does not track. */
  name?: string;
  /** The columns an index is built on. */
  columns?: ModelColumn[];
  origin: StepOrigin;
}

export function resolveExpectations(model: SchemaModel, pending: PendingExpectation[]): ExpectedObject[] {
  const visible = new Set(model.visibleTables());
  const resolved = new Map<string, ExpectedObject>();
  for (const e of pending) {
    const table = e.table;
    if (!visible.has(table)) continue;
    const has = (column: ModelColumn) => table.columns.includes(column);
    let object: ExpectedObject | undefined;
    switch (e.kind) {
      case 'table':
        object = { kind: 'table', table: table.name, name: table.name, origin: e.origin };
        break;
      case 'column':
        if (e.column && has(e.column)) object = { kind: 'column', table: table.name, name: e.column.name, origin: e.origin };
        break;
      case 'constraint':
        if (e.constraint) {
          if (table.constraints.includes(e.constraint)) object = { kind: 'constraint', table: table.name, name: e.constraint.name, origin: e.origin };
        } else if (e.name && (!e.column || has(e.column))) {
          object = { kind: 'constraint', table: table.name, name: e.name, origin: e.origin };
        }
        break;
      case 'index':
        if (e.name && model.indexNames.has(e.name) && (e.columns ?? []).every(has)) {
          object = { kind: 'index', table: table.name, name: e.name, columns: (e.columns ?? []).map((c) => c.name), origin: e.origin };
        }
        break;
    }
    if (object) resolved.set(`${object.kind}:${object.table}:${object.name}`, object);
  }
  return [...resolved.values()];
}
