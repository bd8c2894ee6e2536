/**
 * Small typed accessors over libpg-query's parse tree. The tree is JSON in which every node is a
 * one-key object (`{ ColumnDef: {...} }`) and every field is optional (proto3 leaves out zero
 * values), so reading it safely needs the same few moves everywhere; they live here.
 */
import { scanSync, type Node, type RangeVar, type TypeName } from 'libpg-query';

type AnyNode = Node extends infer U ? (U extends unknown ? U : never) : never;
export type NodeKind = AnyNode extends infer U ? (U extends unknown ? keyof U & string : never) : never;
export type NodeOf<K extends NodeKind> = Extract<Node, Record<K, unknown>> extends infer U ? (U extends Record<K, infer V> ? V : never) : never;

/** The node's type name, e.g. `AlterTableStmt`. */
export function kindOf(node: Node): string {
  return Object.keys(node)[0]!;
}

/** The node's body when it is of `kind`, else undefined. */
export function asNode<K extends NodeKind>(node: Node | undefined, kind: K): NodeOf<K> | undefined {
  if (!node || !(kind in node)) return undefined;
  return (node as unknown as Record<K, NodeOf<K>>)[kind];
}

/** The `sval` of each String node in a name list (`names`, `funcname`, `fk_attrs`, ...). */
export function stringList(nodes: Node[] | undefined): string[] {
  return (nodes ?? []).flatMap((node) => {
    const value = asNode(node, 'String')?.sval;
    return value === undefined ? [] : [value];
  });
}

export interface RelationName {
  schema?: string;
  name: string;
}

export function relationOf(range: RangeVar | undefined): RelationName | undefined {
  if (!range?.relname) return undefined;
  return range.schemaname ? { schema: range.schemaname, name: range.relname } : { name: range.relname };
}

/** A name list (`schema.name` or `name`) as a relation name. */
export function relationFromNames(names: string[]): RelationName | undefined {
  const name = names.at(-1);
  if (!name) return undefined;
  return names.length > 1 ? { schema: names.at(-2)!, name } : { name };
}

/** `schema.name` or `name`, for messages; quoted only where SQL would need it. */
export function displayRelation(relation: RelationName): string {
  return relation.schema ? `${identifierSql(relation.schema)}.${identifierSql(relation.name)}` : identifierSql(relation.name);
}

/** Every `location` inside a subtree (parser byte offsets; -1 and absent ones left out). */
export function locationsIn(value: unknown, found: number[] = []): number[] {
  if (Array.isArray(value)) {
    for (const item of value) locationsIn(item, found);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      if (key === 'location' && typeof inner === 'number' && inner >= 0) found.push(inner);
      else locationsIn(inner, found);
    }
  }
  return found;
}

/** The first location in a subtree: where a finding about it should point. */
export function firstLocation(value: unknown): number | undefined {
  const all = locationsIn(value);
  return all.length ? Math.min(...all) : undefined;
}

/** Calls `visit` on every node (one-key object whose key is a node type) in a subtree. */
export function walk(value: unknown, visit: (kind: string, body: Record<string, unknown>) => void): void {
  if (Array.isArray(value)) {
    for (const item of value) walk(item, visit);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const entries = Object.entries(value);
  if (entries.length === 1 && /^[A-Z]/.test(entries[0]![0]) && entries[0]![1] !== null && typeof entries[0]![1] === 'object') {
    visit(entries[0]![0], entries[0]![1] as Record<string, unknown>);
  }
  for (const [, inner] of entries) walk(inner, visit);
}

const BARE_IDENTIFIER = /^[a-z_][a-z0-9_$]*$/;

/**
 * An identifier as SQL text: bare when PostgreSQL would read it back unchanged, double-quoted
 * otherwise. Keywords are judged by PostgreSQL's own scanner rather than a list of our own.
 * (core/quote.ts `quoteIdent` always quotes; this is for text people read, like generated types.)
 * Needs the parser loaded (`loadParser`, which `parseSql` awaits).
 */
export function identifierSql(name: string): string {
  if (BARE_IDENTIFIER.test(name)) {
    const tokens = scanSync(name).tokens ?? [];
    // Unreserved keywords (kind 1) are fine as identifiers; the other classes are not everywhere.
    if (tokens.length === 1 && (tokens[0]!.keywordKind === 0 || tokens[0]!.keywordKind === 1)) return name;
  }
  return `"${name.replace(/"/g, '""')}"`;
}

/** SQL spellings of the built-in types the parser names by their internal pg_catalog names. */
const CATALOG_TYPES: Record<string, string> = {
  int2: 'smallint',
  int4: 'integer',
  int8: 'bigint',
  float4: 'real',
  float8: 'double precision',
  bool: 'boolean',
  varchar: 'varchar',
  bpchar: 'char',
  numeric: 'numeric',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
  time: 'time',
  timetz: 'timetz',
  interval: 'interval',
  bit: 'bit',
  varbit: 'bit varying',
};

/** The type's names without a `pg_catalog` qualifier, lower level than `typeSql`. */
export function typeNames(type: TypeName | undefined): string[] {
  const names = stringList(type?.names);
  return names[0] === 'pg_catalog' && names.length === 2 ? [names[1]!] : names;
}

/** The base type's internal name when it is a built-in (`int4`, `varchar`, `timestamp`, ...). */
export function builtinType(type: TypeName | undefined): string | undefined {
  const names = stringList(type?.names);
  if (names.length === 2 && names[0] === 'pg_catalog') return names[1];
  // Written with the internal name (`int4`, `timestamptz`): the parser keeps it unqualified.
  if (names.length === 1 && (names[0]! in CATALOG_TYPES || names[0] === 'text' || names[0]!.endsWith('serial'))) return names[0];
  return undefined;
}

export function typmodValues(type: TypeName | undefined): number[] {
  return (type?.typmods ?? []).flatMap((node) => {
    const constant = asNode(node, 'A_Const');
    if (!constant) return [];
    // proto3 JSON leaves out a zero ival: `{ ival: {} }` is 0.
    if (constant.ival) return [constant.ival.ival ?? 0];
    return [];
  });
}

/** A TypeName as SQL text, e.g. `varchar(255)`, `timestamptz`, `"Mood"[]`, `app.money_amount`. */
export function typeSql(type: TypeName): string {
  const names = stringList(type.names);
  const modifiers = typmodValues(type);
  let base: string;
  const catalogName = names.length === 2 && names[0] === 'pg_catalog' ? names[1]! : undefined;
  if (catalogName === 'interval') {
    base = intervalSql(modifiers);
  } else if (catalogName && CATALOG_TYPES[catalogName]) {
    base = CATALOG_TYPES[catalogName]! + (modifiers.length ? `(${modifiers.join(',')})` : '');
  } else {
    base = names.map(identifierSql).join('.') + (modifiers.length ? `(${modifiers.join(',')})` : '');
  }
  if (type.pct_type) base += '%TYPE';
  for (const bound of type.arrayBounds ?? []) {
    const size = asNode(bound, 'Integer')?.ival;
    base += size === undefined || size < 0 ? '[]' : `[${size}]`;
  }
  return type.setof ? `SETOF ${base}` : base;
}

// Interval field masks from PostgreSQL's datetime.h: INTERVAL_MASK(field) = 1 << field.
const INTERVAL_FIELDS: [string, number][] = [
  ['year', 1 << 2],
  ['month', 1 << 1],
  ['day', 1 << 3],
  ['hour', 1 << 10],
  ['minute', 1 << 11],
  ['second', 1 << 12],
];
const INTERVAL_FULL_RANGE = 0x7fff;

function intervalSql(modifiers: number[]): string {
  const [fields, precision] = modifiers;
  if (fields === undefined || fields === INTERVAL_FULL_RANGE) {
    return precision === undefined ? 'interval' : `interval(${precision})`;
  }
  const present = INTERVAL_FIELDS.filter(([, mask]) => (fields & mask) !== 0).map(([name]) => name);
  let text = `interval ${present[0]}`;
  if (present.length > 1) text += ` to ${present.at(-1)}`;
  if (precision !== undefined && present.at(-1) === 'second') text += `(${precision})`;
  return text;
}
