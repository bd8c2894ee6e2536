/**
 * Plausible rows for every table of a schema, whatever its shape, so that migrations of a real
 * history meet data: parents before children (a foreign key takes an existing parent's key), a
 * value of the column's type for every column without a default, distinct values where a unique
 * index may ask for them (text is a JSON string, which a later cast to json accepts). A table that refuses its rows anyway (a CHECK the generator cannot
 * guess) is left as it is.
 */
import type pg from 'pg';

interface ColumnInfo {
  table: string;
  name: string;
  type: string;
  category: string;
  notNull: boolean;
  hasDefault: boolean;
  generated: boolean;
  enumType: string | null;
  /** `schema.table.column` this column references, when it is a single-column foreign key. */
  references: string | null;
}

let serial = 0;

/** Inserts up to `count` rows into every table of `schema`; returns how many went in. */
export async function fillTables(db: pg.Client, schema: string, count: number): Promise<number> {
  const { rows: columns } = await db.query<ColumnInfo>(
    `SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typcategory AS category,
            a.attnotnull AS "notNull", a.atthasdef AS "hasDefault", (a.attidentity <> '' OR a.attgenerated <> '') AS generated,
            CASE WHEN t.typtype = 'e' THEN a.atttypid::regtype::text END AS "enumType",
            (SELECT format('%I.%I.%I', rn.nspname, rc.relname, ra.attname)
               FROM pg_constraint k JOIN pg_class rc ON rc.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
               JOIN pg_attribute ra ON ra.attrelid = k.confrelid AND ra.attnum = k.confkey[1]
              WHERE k.conrelid = c.oid AND k.contype = 'f' AND k.conkey = ARRAY[a.attnum] LIMIT 1) AS references
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
      WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY c.relname, a.attnum`,
    [schema],
  );
  const tables = new Map<string, ColumnInfo[]>();
  for (const column of columns) tables.set(column.table, [...(tables.get(column.table) ?? []), column]);
  let inserted = 0;
  await db.query('BEGIN');
  for (const table of parentsFirst(tables, schema)) {
    const chosen = tables.get(table)!.filter((c) => !c.generated && (!c.hasDefault || c.references));
    const values = chosen.map((column) => valueFor(column));
    if (values.some((v) => v === undefined)) continue;
    const sql = `INSERT INTO ${ident(schema)}.${ident(table)} (${chosen.map((c) => ident(c.name)).join(', ')})
                 SELECT ${values.join(', ')} FROM generate_series(1, ${count}) AS g`;
    try {
      await db.query('SAVEPOINT fill');
      inserted += (await db.query(chosen.length ? sql : `INSERT INTO ${ident(schema)}.${ident(table)} SELECT FROM generate_series(1, ${count})`)).rowCount ?? 0;
      await db.query('RELEASE SAVEPOINT fill');
    } catch {
      await db.query('ROLLBACK TO SAVEPOINT fill');
    }
    serial += count;
  }
  await db.query('COMMIT');
  return inserted;
}

/** A value expression for row `g`, or undefined when the generator has none for this column. */
function valueFor(column: ColumnInfo): string | undefined {
  if (column.references) {
    const [schema, table, key] = column.references.split('.');
    // Spread over the parents that exist; NULL (or no row at all, for NOT NULL) when there are none.
    return `(SELECT ${key} FROM ${schema}.${table} ORDER BY ${key} OFFSET (g % greatest(1, (SELECT count(*) FROM ${schema}.${table}))) LIMIT 1)`;
  }
  const n = `(${serial} + g)`;
  if (column.enumType) return `(enum_range(NULL::${column.enumType}))[1]`;
  const type = column.type.toLowerCase();
  if (type.endsWith('[]')) return `'{}'`;
  if (type === 'uuid') return 'gen_random_uuid()';
  if (type === 'boolean') return `(g % 2 = 0)`;
  if (type === 'json' || type === 'jsonb') return `'{}'::${type}`;
  if (type === 'bytea') return `'\\x00'::bytea`;
  if (column.category === 'N') return `${n}::${column.type}`;
  if (column.category === 'D') return `(now() - ${n} * interval '1 minute')::${column.type}`;
  if (column.category === 'S') {
    const length = /\((\d+)\)/.exec(column.type)?.[1];
    // A JSON string literal, so that a later `USING col::jsonb` (text columns that became JSON) accepts it.
    const text = `('"r' || ${n} || '_' || md5(random()::text) || '"')`;
    return length ? `left(${text}, ${length})` : text;
  }
  return column.notNull ? undefined : 'NULL';
}

/** Tables ordered so that a table comes after the tables it references (cycles: in name order). */
function parentsFirst(tables: Map<string, ColumnInfo[]>, schema: string): string[] {
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = (table: string) => {
    if (order.includes(table) || visiting.has(table)) return;
    visiting.add(table);
    for (const column of tables.get(table) ?? []) {
      const [refSchema, refTable] = column.references?.split('.') ?? [];
      const parent = refTable?.replace(/^"|"$/g, '');
      if (parent && refSchema?.replace(/^"|"$/g, '') === schema && tables.has(parent) && parent !== table) visit(parent);
    }
    order.push(table);
  };
  for (const table of [...tables.keys()].sort()) visit(table);
  return order;
}

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
