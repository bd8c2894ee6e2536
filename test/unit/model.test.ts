import { describe, expect, it } from 'vitest';
import { findColumn, movePhysical, physicalColumnTaken, renameColumn, type ModelColumn, type ModelTable } from '../../src/core/model.js';

function modelColumn(name: string, original: string | null = name): ModelColumn {
  return { name, physical: name, type: 'int', nullable: true, default: null, identity: '', generated: '', comment: null, original };
}

function modelTable(columns: ModelColumn[]): ModelTable {
  return { name: 't', physical: 't', created: false, columns, constraints: [], primaryKey: [], grants: [] };
}

/** The column lookups answer as a scan of the current columns would, however the table changed. */
describe('column lookups of the planning model', () => {
  it('see columns pushed after the first lookup, and none that were never there', () => {
    const table = modelTable([modelColumn('a')]);
    expect(findColumn(table, 'b')).toBeUndefined();
    const b = modelColumn('b', null);
    table.columns.push(b);
    expect(findColumn(table, 'b')).toBe(b);
    expect(physicalColumnTaken(table, 'b')).toBe(true);
    expect(physicalColumnTaken(table, 'c')).toBe(false);
    expect(physicalColumnTaken(table, 'c', ['x', 'c'])).toBe(true);
  });

  it('follow renames: the new name finds the column, the old one no longer does, its physical name stays taken', () => {
    const table = modelTable([modelColumn('email'), modelColumn('name')]);
    const email = findColumn(table, 'email')!;
    renameColumn(table, email, 'email_address');
    expect(findColumn(table, 'email')).toBeUndefined();
    expect(findColumn(table, 'email_address')).toBe(email);
    expect(physicalColumnTaken(table, 'email')).toBe(true);
    expect(physicalColumnTaken(table, 'email_address')).toBe(false);
    // A second rename, back onto a name that was in the index before.
    renameColumn(table, email, 'email');
    expect(findColumn(table, 'email')).toBe(email);
    expect(findColumn(table, 'email_address')).toBeUndefined();
  });

  it('follow a column moved onto a shadow: both the shadow and the original name are taken', () => {
    const table = modelTable([modelColumn('age')]);
    const age = findColumn(table, 'age')!;
    expect(physicalColumnTaken(table, '_pgroll_new_age')).toBe(false);
    movePhysical(table, age, '_pgroll_new_age');
    expect(physicalColumnTaken(table, '_pgroll_new_age')).toBe(true);
    expect(physicalColumnTaken(table, 'age')).toBe(true);
    expect(findColumn(table, 'age')).toBe(age);
  });

  it('start afresh when the columns are replaced (a dropped column is gone)', () => {
    const table = modelTable([modelColumn('a'), modelColumn('b', null)]);
    expect(findColumn(table, 'b')).toBeDefined();
    table.columns = table.columns.filter((c) => c.name !== 'b');
    expect(findColumn(table, 'b')).toBeUndefined();
    expect(physicalColumnTaken(table, 'b')).toBe(false);
  });

  it('count the columns of the table as the catalog had it', () => {
    const table = modelTable([]);
    table.info = { columns: [{ name: 'dropped_later' }] } as ModelTable['info'];
    expect(physicalColumnTaken(table, 'dropped_later')).toBe(true);
    expect(physicalColumnTaken(table, 'other')).toBe(false);
  });

  it('find the first of two columns with one name, as a scan would', () => {
    const first = modelColumn('x');
    const second = modelColumn('y');
    const table = modelTable([first, second]);
    expect(findColumn(table, 'y')).toBe(second);
    renameColumn(table, second, 'x');
    expect(findColumn(table, 'x')).toBe(first);
  });
});
