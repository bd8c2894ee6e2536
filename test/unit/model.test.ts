import { describe, expect, it } from 'vitest';
import {
  addColumn,
  addConstraint,
  dropColumn,
  dropConstraint,
  findColumn,
  moveConstraint,
  movePhysical,
  physicalColumnTaken,
  renameColumn,
  type ModelColumn,
  type ModelTable,
} from '../../src/core/model.js';

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
    const table = modelTable([modelColumn('a')]);
    const b = modelColumn('b', null);
    addColumn(table, b);
    expect(findColumn(table, 'b')).toBe(b);
    dropColumn(table, b);
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

describe('changes to the planning model', () => {
  it('a renamed column takes the constraints and primary key that name it along', () => {
    const table = modelTable([modelColumn('id'), modelColumn('age')]);
    addConstraint(table, { name: 't_pkey', physical: 't_pkey', type: 'primary_key', columns: ['id'] });
    const check = addConstraint(table, { name: 't_age_check', physical: 't_age_check', type: 'check', columns: ['age'] });
    expect(table.primaryKey).toEqual(['id']);
    renameColumn(table, findColumn(table, 'id')!, 'key');
    renameColumn(table, findColumn(table, 'age')!, 'years');
    expect(table.primaryKey).toEqual(['key']);
    expect(table.constraints.map((c) => c.columns)).toEqual([['key'], ['years']]);
    moveConstraint(table, 't_age_check', '_tandem_c_t_age_check');
    expect(check).toMatchObject({ name: 't_age_check', physical: '_tandem_c_t_age_check' });
  });

  it('a dropped primary key leaves the table without one', () => {
    const table = modelTable([modelColumn('id')]);
    const primaryKey = addConstraint(table, { name: 't_pkey', physical: 't_pkey', type: 'primary_key', columns: ['id'] });
    dropConstraint(table, primaryKey);
    expect(table.primaryKey).toEqual([]);
    expect(table.constraints).toEqual([]);
  });
});
