/**
 * Everything a schema holds that a migration can change, as plain data two databases can be
 * compared by: tables with their columns (by name: a type change through a shadow column moves a
 * column to the end, which no query sees), constraints, indexes, enums, functions, triggers and
 * sequences. What tandem keeps for itself (its state schema, version schemas) lives elsewhere.
 */
import type pg from 'pg';

export interface SchemaSnapshot {
  tables: Record<string, { columns: Record<string, string>; constraints: Record<string, string>; indexes: Record<string, string>; triggers: string[] }>;
  enums: Record<string, string[]>;
  functions: Record<string, string>;
  sequences: Record<string, string>;
}

export async function snapshotSchema(db: pg.Client, schema: string): Promise<SchemaSnapshot> {
  const snapshot: SchemaSnapshot = { tables: {}, enums: {}, functions: {}, sequences: {} };
  const tables = await db.query<{ name: string }>(`SELECT relname AS name FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind IN ('r', 'p') ORDER BY 1`, [schema]);
  for (const { name } of tables.rows) snapshot.tables[name] = { columns: {}, constraints: {}, indexes: {}, triggers: [] };
  const table = (name: string) => snapshot.tables[name]!;
  const columns = await db.query<{ table: string; name: string; shape: string }>(
    `SELECT c.relname AS table, a.attname AS name,
            concat_ws(' ', format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN 'NOT NULL' END,
                      'DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), CASE a.attidentity WHEN 'a' THEN 'IDENTITY ALWAYS' WHEN 'd' THEN 'IDENTITY BY DEFAULT' END,
                      CASE WHEN a.attgenerated = 's' THEN 'GENERATED' END, 'COMMENT ' || col_description(c.oid, a.attnum)) AS shape
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`,
    [schema],
  );
  for (const row of columns.rows) table(row.table).columns[row.name] = row.shape;
  const constraints = await db.query<{ table: string; name: string; def: string }>(
    `SELECT c.relname AS table, k.conname AS name, pg_get_constraintdef(k.oid) AS def
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid WHERE c.relnamespace = $1::regnamespace AND k.contype <> 'n'`,
    [schema],
  );
  for (const row of constraints.rows) table(row.table).constraints[row.name] = row.def;
  const indexes = await db.query<{ table: string; name: string; def: string }>(
    `SELECT c.relname AS table, i.relname AS name, pg_get_indexdef(x.indexrelid) AS def
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid WHERE c.relnamespace = $1::regnamespace`,
    [schema],
  );
  for (const row of indexes.rows) table(row.table).indexes[row.name] = row.def;
  const triggers = await db.query<{ table: string; def: string }>(
    `SELECT c.relname AS table, pg_get_triggerdef(t.oid) AS def FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal ORDER BY 2`,
    [schema],
  );
  for (const row of triggers.rows) table(row.table).triggers.push(row.def);
  const enums = await db.query<{ name: string; labels: string[] }>(
    `SELECT t.typname AS name, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
      WHERE t.typnamespace = $1::regnamespace GROUP BY t.typname`,
    [schema],
  );
  for (const row of enums.rows) snapshot.enums[row.name] = row.labels;
  const functions = await db.query<{ name: string; def: string }>(
    `SELECT p.oid::regprocedure::text AS name, pg_get_functiondef(p.oid) AS def FROM pg_proc p WHERE p.pronamespace = $1::regnamespace AND p.prokind IN ('f', 'p')`,
    [schema],
  );
  for (const row of functions.rows) snapshot.functions[row.name] = row.def;
  const sequences = await db.query<{ name: string; shape: string }>(
    `SELECT c.relname AS name, concat_ws(' ', format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax, s.seqcycle,
            'OWNED BY ' || (SELECT o.relname || '.' || a.attname FROM pg_depend d JOIN pg_class o ON o.oid = d.refobjid
                              JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                             WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))) AS shape
       FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = $1::regnamespace`,
    [schema],
  );
  for (const row of sequences.rows) snapshot.sequences[row.name] = row.shape;
  return snapshot;
}
