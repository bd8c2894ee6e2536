/**
 * The schema as the new version will see it, built from the live catalog and changed by each
 * operation as it is planned. Every table and column knows two names: the one the new version
 * uses (`name`) and the physical one that holds its data during the migration (`physical`).
 * Version views are written from this model; `complete` makes the physical names match.
 */
import type { ColumnInfo, ConstraintType, Grant, InboundForeignKey, SchemaInfo, TableInfo } from './catalog-types.js';
import { TandemError } from '../errors/index.js';
import { derivedIdent } from './quote.js';
import type { PendingIndex } from './steps.js';

export interface ModelColumn {
  /** The name the new version sees. */
  name: string;
  /** The physical column holding the new version's value (a shadow column while it is being changed). */
  physical: string;
  type: string;
  nullable: boolean;
  default: string | null;
  identity: ColumnInfo['identity'];
  generated: ColumnInfo['generated'];
  comment: string | null;
  /** The physical column the old version reads, when the column existed before this migration. */
  original: string | null;
}

export interface ModelConstraint {
  /** The name after this migration. */
  name: string;
  /** The name in the database right now. */
  physical: string;
  type: ConstraintType;
  /** Visible column names. */
  columns: string[];
  /** The unique/primary index behind it. */
  indexName?: string;
}

export interface ModelTable {
  /** The name the new version sees. */
  name: string;
  physical: string;
  /** Created by this migration: nothing old reads it, so no version juggling is needed. */
  created: boolean;
  columns: ModelColumn[];
  constraints: ModelConstraint[];
  /** Visible names of the primary key columns. */
  primaryKey: string[];
  /** The catalog entry at the start of the migration (absent for created tables). */
  info?: TableInfo;
  grants: Grant[];
  /**
   * The columns the old version sees, when they are not the catalog's: the table as an active
   * migration's version shows it, for a migration stacked on it (see `stackOn`).
   */
  previous?: { name: string; physical: string; type: string }[];
}

/**
 * A table as one migration's version sees it, stored with its plan: a migration stacked on it plans
 * on this, not on the catalog, which still holds every active version's columns.
 */
export interface VersionTable {
  name: string;
  physical: string;
  columns: Omit<ModelColumn, 'original'>[];
  constraints: ModelConstraint[];
  primaryKey: string[];
  grants: Grant[];
}

/** An active migration's version of the tables it touches, as a stacked migration plans on it. */
export interface StackedVersion {
  touched: string[];
  tables: VersionTable[];
  indexNames: string[];
  pendingIndexes?: PendingIndex[];
}

export class SchemaModel {
  readonly schema: string;
  readonly serverVersionNum: number;
  readonly usageGrantees: string[];
  private readonly tables = new Map<string, ModelTable>();
  /** Index names in use, physical. */
  readonly indexNames: Set<string>;
  /** Physical table names in use, including tables hidden by drop_table until complete. */
  readonly physicalTables: Set<string>;
  /** Tables drop_table hid: they stay until complete drops them, under these physical names. */
  readonly droppedTables = new Map<string, ModelTable>();
  /** Constraints of existing tables that drop_constraint dropped, as `<table oid>:<name>`. */
  readonly droppedConstraints = new Set<string>();
  /** The active migrations' indexes in waiting (see stackOn), by the temporary name they are built under. */
  readonly pendingIndexes = new Map<string, PendingIndex>();

  constructor(info: SchemaInfo) {
    this.schema = info.name;
    this.serverVersionNum = info.serverVersionNum;
    this.usageGrantees = info.usageGrantees;
    this.indexNames = new Set(info.indexNames);
    this.physicalTables = new Set(info.tables.keys());
    for (const table of info.tables.values()) {
      const primaryKey = table.constraints.find((c) => c.type === 'primary_key')?.columns ?? [];
      this.tables.set(table.name, {
        name: table.name,
        physical: table.name,
        created: false,
        info: table,
        grants: table.grants,
        primaryKey: [...primaryKey],
        columns: table.columns.map((c) => ({ ...c, physical: c.name, original: c.name })),
        constraints: table.constraints
          .filter((c) => c.type !== 'not_null')
          .map((c) => ({
            name: c.name,
            physical: c.name,
            type: c.type,
            columns: [...c.columns],
            ...(c.indexName ? { indexName: c.indexName } : {}),
          })),
      });
    }
  }

  /**
   * Makes the model start from the active migrations' versions instead of the catalog (`bases`, oldest
   * first, each with the tables it touches by every name it gives): the tables a stacked migration
   * shares with them (`shared`, by any name) look as the newest of them shows them, and the tables
   * they drop are gone. The others stay as the catalog has them.
   */
  stackOn(bases: StackedVersion[], info: SchemaInfo, shared: readonly string[]): void {
    for (const base of bases) {
      // Names the active migrations' indexes take at their complete are not free for this one.
      for (const name of base.indexNames) this.addIndex(name);
      for (const pending of base.pendingIndexes ?? []) this.pendingIndexes.set(pending.index, pending);
      const kept = new Set(base.tables.flatMap((t) => [t.name, t.physical]));
      for (const name of base.touched) if (!kept.has(name) && this.tables.get(name)?.physical === name) this.tables.delete(name);
      for (const version of base.tables) {
        if (!shared.includes(version.name) && !shared.includes(version.physical)) continue;
        for (const [name, table] of this.tables) if (table.physical === version.physical) this.tables.delete(name);
        const catalog = info.tables.get(version.physical);
        this.tables.set(version.name, {
          name: version.name,
          physical: version.physical,
          created: false,
          ...(catalog ? { info: catalog } : {}),
          grants: version.grants.map((g) => ({ ...g })),
          primaryKey: [...version.primaryKey],
          columns: version.columns.map((c) => ({ ...c, original: c.physical })),
          constraints: version.constraints.map((c) => ({ ...c, columns: [...c.columns] })),
          previous: version.columns.map((c) => ({ name: c.name, physical: c.physical, type: c.type })),
        });
      }
    }
  }

  /** The tables named (by their name or physical name) as the new version sees them, to store with the plan. */
  versionTables(names: readonly string[]): VersionTable[] {
    const wanted = new Set(names);
    return this.visibleTables()
      .filter((t) => wanted.has(t.name) || wanted.has(t.physical))
      .map((t) => ({
        name: t.name,
        physical: t.physical,
        columns: t.columns.map(({ original: _original, ...column }) => ({ ...column })),
        constraints: t.constraints.map((c) => ({ ...c, columns: [...c.columns] })),
        primaryKey: [...t.primaryKey],
        grants: t.grants.map((g) => ({ ...g })),
      }));
  }

  /** Tables the new version sees, in name order. */
  visibleTables(): ModelTable[] {
    return [...this.tables.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  findTable(name: string): ModelTable | undefined {
    return this.tables.get(name);
  }

  /** The table, or a validation error naming `field`. */
  table(name: string, field: string): ModelTable {
    const table = this.tables.get(name);
    if (!table) {
      const known = [...this.tables.keys()];
      throw new TandemError({ kind: 'table_unknown', schema: this.schema, table: name, known }, { field });
    }
    return table;
  }

  addTable(table: ModelTable): void {
    this.tables.set(table.name, table);
    this.physicalTables.add(table.physical);
  }

  /** drop_table: the new version no longer sees the table; it stays in the database until complete. */
  dropTable(name: string): void {
    const table = this.tables.get(name);
    if (!table) return;
    this.tables.delete(name);
    if (!table.created) this.droppedTables.set(table.physical, table);
  }

  /** True when `name` is an index of a table drop_table hid: it goes when complete drops the table. */
  indexOfDroppedTable(name: string): boolean {
    return [...this.droppedTables.values()].some((t) => t.info?.indexes.some((i) => i.name === name));
  }

  /** True when `name` is a physical table only because drop_table hid it (and no index takes it). */
  takenByDroppedTable(name: string): boolean {
    return this.droppedTables.has(name) && !this.indexNames.has(name);
  }

  renameTable(from: string, to: string): void {
    const table = this.tables.get(from);
    if (!table) return;
    this.tables.delete(from);
    table.name = to;
    this.tables.set(to, table);
  }

  /** An index this migration creates takes `name` in the schema's relation namespace. */
  addIndex(name: string): void {
    this.indexNames.add(name);
  }

  /** drop_index: the name is free for the new version (the index itself goes at complete). */
  dropIndex(name: string): void {
    this.indexNames.delete(name);
  }

  /** drop_constraint of a constraint that exists: foreign keys pointing elsewhere stop counting. */
  dropExistingConstraint(table: ModelTable, physical: string): void {
    this.droppedConstraints.add(`${table.info!.oid}:${physical}`);
  }

  /** True when a physical table or index already uses `name` (they share one namespace). */
  relationNameTaken(name: string): boolean {
    return this.physicalTables.has(name) || this.indexNames.has(name);
  }

  /** True when the server is at least the given major version. */
  atLeast(major: number): boolean {
    return this.serverVersionNum >= major * 10000;
  }
}

/**
 * Name lookups over a table's columns, kept per columns array so that a migration with thousands of
 * operations on one table plans in linear time. Columns pushed onto the array are indexed on the
 * next lookup; an array replaced (a dropped column) gets a fresh index; a column renamed or moved to
 * a shadow goes through `renameColumn` / `movePhysical`, which index its new name. A candidate is
 * always checked against the column's current fields, so an entry under an old name never matches.
 */
interface ColumnIndex {
  indexed: number;
  byName: Map<string, ModelColumn[]>;
  /** Physical and original names. */
  byPhysical: Map<string, ModelColumn[]>;
}

const columnIndexes = new WeakMap<ModelColumn[], ColumnIndex>();
const catalogColumnNames = new WeakMap<readonly ColumnInfo[], Set<string>>();

function addTo(map: Map<string, ModelColumn[]>, key: string, column: ModelColumn): void {
  const list = map.get(key);
  if (!list) map.set(key, [column]);
  else if (!list.includes(column)) list.push(column);
}

function indexColumn(index: ColumnIndex, column: ModelColumn): void {
  addTo(index.byName, column.name, column);
  addTo(index.byPhysical, column.physical, column);
  if (column.original) addTo(index.byPhysical, column.original, column);
}

function columnIndex(table: ModelTable): ColumnIndex {
  let index = columnIndexes.get(table.columns);
  if (!index) {
    index = { indexed: 0, byName: new Map(), byPhysical: new Map() };
    columnIndexes.set(table.columns, index);
  }
  for (; index.indexed < table.columns.length; index.indexed++) indexColumn(index, table.columns[index.indexed]!);
  return index;
}

export function findColumn(table: ModelTable, name: string): ModelColumn | undefined {
  const candidates = columnIndex(table).byName.get(name);
  if (!candidates) return undefined;
  // In column order, as a scan would find it.
  let found: ModelColumn | undefined;
  let position = Infinity;
  for (const candidate of candidates) {
    if (candidate.name !== name) continue;
    const at = candidates.length === 1 ? 0 : table.columns.indexOf(candidate);
    if (at >= 0 && at < position) {
      found = candidate;
      position = at;
    }
  }
  return found;
}

/** Gives a column the name the new version sees it by; the constraints and primary key naming it follow. */
export function renameColumn(table: ModelTable, column: ModelColumn, to: string): void {
  const from = column.name;
  column.name = to;
  indexColumn(columnIndex(table), column);
  for (const constraint of table.constraints) constraint.columns = constraint.columns.map((c) => (c === from ? to : c));
  table.primaryKey = table.primaryKey.map((c) => (c === from ? to : c));
}

/** A column the new version sees and the old one does not. */
export function addColumn(table: ModelTable, column: ModelColumn): void {
  table.columns.push(column);
}

/** The new version stops seeing the column (its column index starts afresh with the new array). */
export function dropColumn(table: ModelTable, column: ModelColumn): void {
  table.columns = table.columns.filter((c) => c !== column);
}

/** The definition the new version gives a column: for a shadowed column, what its shadow is built with. */
export type ColumnChanges = Partial<Pick<ModelColumn, 'type' | 'nullable' | 'default' | 'comment'>>;

export function changeColumn(column: ModelColumn, changes: ColumnChanges): void {
  if (changes.type !== undefined) column.type = changes.type;
  if (changes.nullable !== undefined) column.nullable = changes.nullable;
  if (changes.default !== undefined) column.default = changes.default;
  if (changes.comment !== undefined) column.comment = changes.comment;
}

/** A constraint the new version has; a primary key becomes the table's. */
export function addConstraint(table: ModelTable, constraint: ModelConstraint): ModelConstraint {
  table.constraints.push(constraint);
  if (constraint.type === 'primary_key') table.primaryKey = [...constraint.columns];
  return constraint;
}

/** The new version no longer has the constraint (nor, for a primary key, a primary key). */
export function dropConstraint(table: ModelTable, constraint: ModelConstraint): void {
  table.constraints = table.constraints.filter((c) => c !== constraint);
  if (constraint.type === 'primary_key') table.primaryKey = [];
}

/** The name the constraint has after complete (the physical one until then). */
export function renameConstraint(constraint: ModelConstraint, to: string): void {
  constraint.name = to;
}

/** The constraint now lives under another physical name until complete renames it (a copy on shadow columns). */
export function moveConstraint(table: ModelTable, physical: string, to: string): void {
  const constraint = table.constraints.find((c) => c.physical === physical);
  if (constraint) constraint.physical = to;
}

/** Points a column at the physical column that now holds the new version's value (a shadow). */
export function movePhysical(table: ModelTable, column: ModelColumn, physical: string): void {
  column.physical = physical;
  indexColumn(columnIndex(table), column);
}

/** The column, or a validation error naming `field`. */
export function column(table: ModelTable, name: string, field: string): ModelColumn {
  const found = findColumn(table, name);
  if (!found) {
    throw new TandemError({ kind: 'column_unknown', table: table.name, column: name, known: table.columns.map((c) => c.name) }, { field });
  }
  return found;
}

export function requireNewColumnName(table: ModelTable, name: string, field: string): void {
  if (findColumn(table, name)) {
    throw new TandemError({ kind: 'column_exists', table: table.name, column: name }, { field });
  }
}

/**
 * The physical name for a new CHECK or FOREIGN KEY constraint `name`: itself, unless a constraint of
 * that name is still on the table (one the migration drops goes only at complete), then a temporary
 * name that complete renames once the old one is gone.
 */
export function freeConstraintName(table: ModelTable, name: string): string {
  const taken = (candidate: string) => table.constraints.some((c) => c.physical === candidate) || (table.info?.constraints.some((c) => c.name === candidate) ?? false);
  if (!taken(name)) return name;
  let temporary = derivedIdent('_tandem_nc_', name);
  while (taken(temporary)) temporary = derivedIdent('_', temporary);
  return temporary;
}

/** Foreign keys of other tables pointing at `table` that are still there as the operations so far leave them. */
export function inboundForeignKeysLeft(model: SchemaModel, table: ModelTable): InboundForeignKey[] {
  return (table.info?.inboundForeignKeys ?? []).filter(
    (fk) => !model.droppedConstraints.has(`${fk.tableOid}:${fk.name}`) && ![...model.droppedTables.values()].some((t) => t.info?.oid === fk.tableOid),
  );
}

export function findConstraint(table: ModelTable, name: string): ModelConstraint | undefined {
  return table.constraints.find((c) => c.name === name);
}

/** True when a physical column of this table already has `name` (visible, hidden or shadow). */
export function physicalColumnTaken(table: ModelTable, name: string, extra: Iterable<string> = []): boolean {
  const candidates = columnIndex(table).byPhysical.get(name) ?? [];
  if (candidates.some((c) => c.physical === name || c.original === name)) return true;
  if (table.info) {
    let names = catalogColumnNames.get(table.info.columns);
    if (!names) {
      names = new Set(table.info.columns.map((c) => c.name));
      catalogColumnNames.set(table.info.columns, names);
    }
    if (names.has(name)) return true;
  }
  for (const taken of extra) if (taken === name) return true;
  return false;
}

/** A name an expression may use, bound to the physical column holding its value. */
export interface NameBinding {
  column: string;
  type: string;
}

/**
 * The names an `up` expression may use: the row as the old version sees it. Both the old name and
 * the name the new version gives a column resolve, since pgroll users write either.
 */
export function oldVersionNames(table: ModelTable): Record<string, NameBinding> {
  const names: Record<string, NameBinding> = {};
  if (table.previous) {
    // Stacked: the old version is the active migration's, whose names need not be the catalog's.
    const previous = new Map(table.previous.map((c) => [c.physical, c]));
    for (const c of table.columns) {
      const before = c.original ? previous.get(c.original) : undefined;
      if (before) names[c.name] = { column: before.physical, type: before.type };
    }
    for (const c of table.previous) names[c.name] = { column: c.physical, type: c.type };
    return names;
  }
  const oldColumns = new Map((table.info?.columns ?? []).map((c) => [c.name, c]));
  for (const c of table.columns) {
    if (!c.original) continue;
    const binding = { column: c.original, type: oldColumns.get(c.original)?.type ?? c.type };
    names[c.name] = binding;
  }
  for (const c of oldColumns.values()) names[c.name] = { column: c.name, type: c.type };
  return names;
}

/** The names a `down` expression may use: the row as the new version sees it (old names too, where free). */
export function newVersionNames(table: ModelTable): Record<string, NameBinding> {
  const names: Record<string, NameBinding> = {};
  for (const c of table.columns) if (c.original && c.original !== c.name) names[c.original] = { column: c.physical, type: c.type };
  for (const c of table.columns) names[c.name] = { column: c.physical, type: c.type };
  return names;
}
