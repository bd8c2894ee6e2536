import type { Queryable } from '../db/connection.js';
import type { ColumnInfo, ConstraintInfo, ConstraintType, Grant, InboundForeignKey, IndexInfo, SchemaInfo, TableInfo } from '../core/catalog-types.js';

const CONSTRAINT_TYPES: Record<string, ConstraintType> = {
  p: 'primary_key',
  u: 'unique',
  c: 'check',
  f: 'foreign_key',
  x: 'exclude',
  n: 'not_null',
};

/** Reads every ordinary and partitioned table of `schema` with its columns, constraints and indexes. */
export async function readSchema(db: Queryable, schema: string): Promise<SchemaInfo> {
  const version = await db.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  const usage = await db.query<{ grantee: string }>(
    `SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(e.grantee) END AS grantee
       FROM pg_namespace n, aclexplode(n.nspacl) e
      WHERE n.nspname = $1 AND e.privilege_type = 'USAGE' AND e.grantee <> n.nspowner`,
    [schema],
  );
  const tables = await db.query<{
    oid: number;
    name: string;
    comment: string | null;
    replident: TableInfo['replicaIdentity'];
    reltuples: number;
    relkind: string;
    grants: Grant[] | null;
  }>(
    `SELECT c.oid::int AS oid, c.relname AS name, obj_description(c.oid, 'pg_class') AS comment,
            c.relreplident AS replident, c.reltuples::float8 AS reltuples, c.relkind::text AS relkind,
            (SELECT json_agg(json_build_object(
                      'grantee', CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(e.grantee) END,
                      'privilege', e.privilege_type))
               FROM aclexplode(c.relacl) e WHERE e.grantee <> c.relowner) AS grants
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      ORDER BY c.relname`,
    [schema],
  );
  const oids = tables.rows.map((t) => t.oid);
  // One connection runs one query at a time: these run in turn.
  const columns = await db.query<ColumnInfo & { table_oid: number }>(
      `SELECT a.attrelid::int AS table_oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
              NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS default,
              a.attidentity::text AS identity, a.attgenerated::text AS generated,
              col_description(a.attrelid, a.attnum) AS comment,
              pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) AS sequence
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum`,
      [oids],
    );
  const constraints = await db.query<{
      table_oid: number;
      name: string;
      contype: string;
      columns: string[] | null;
      definition: string;
      validated: boolean;
      ref_table: string | null;
      ref_columns: string[] | null;
      index_name: string | null;
    }>(
      `SELECT con.conrelid::int AS table_oid, con.conname AS name, con.contype::text AS contype,
              (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) AS columns,
              pg_get_constraintdef(con.oid) AS definition, con.convalidated AS validated,
              CASE WHEN con.confrelid <> 0 THEN
                CASE WHEN rn.nspname = $2 THEN rc.relname ELSE format('%I.%I', rn.nspname, rc.relname) END
              END AS ref_table,
              (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum) AS ref_columns,
              ic.relname AS index_name
         FROM pg_constraint con
         LEFT JOIN pg_class rc ON rc.oid = con.confrelid
         LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
         LEFT JOIN pg_class ic ON ic.oid = con.conindid AND con.contype IN ('p', 'u', 'x')
        WHERE con.conrelid = ANY($1::oid[])
        ORDER BY con.conname`,
      [oids, schema],
    );
  const indexes = await db.query<{
      table_oid: number;
      name: string;
      columns: (string | null)[];
      unique: boolean;
      primary: boolean;
      valid: boolean;
      partial: boolean;
      replident: boolean;
      definition: string;
      constraint: string | null;
    }>(
      `SELECT i.indrelid::int AS table_oid, ic.relname AS name,
              (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                 LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                WHERE k.ord <= i.indnkeyatts) AS columns,
              i.indisunique AS unique, i.indisprimary AS primary, i.indisvalid AS valid,
              i.indpred IS NOT NULL AS partial, i.indisreplident AS replident,
              pg_get_indexdef(i.indexrelid) AS definition,
              (SELECT conname FROM pg_constraint WHERE conindid = i.indexrelid AND conrelid = i.indrelid
                  AND contype IN ('p', 'u', 'x') LIMIT 1) AS constraint
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = ANY($1::oid[])
        ORDER BY ic.relname`,
      [oids],
    );
  const inbound = await db.query<InboundForeignKey & { table_oid: number }>(
    `SELECT con.confrelid::int AS table_oid, con.conrelid::int AS "tableOid", con.conrelid::regclass::text AS table, con.conname AS name,
            (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) AS columns,
            (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum) AS "referencedColumns",
            pg_get_constraintdef(con.oid) AS definition
       FROM pg_constraint con
      WHERE con.contype = 'f' AND con.confrelid = ANY($1::oid[])
      ORDER BY con.conname`,
    [oids],
  );
  const indexNames = await db.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('i', 'I')`,
      [schema],
    );

  const result: SchemaInfo = {
    name: schema,
    tables: new Map(),
    indexNames: new Set(indexNames.rows.map((r) => r.relname)),
    serverVersionNum: Number(version.rows[0]!.v),
    usageGrantees: usage.rows.map((r) => r.grantee),
  };
  const byOid = new Map<number, TableInfo>();
  for (const row of tables.rows) {
    const table: TableInfo = {
      oid: row.oid,
      name: row.name,
      columns: [],
      constraints: [],
      indexes: [],
      comment: row.comment,
      replicaIdentity: row.replident,
      estimatedRows: row.reltuples,
      partitioned: row.relkind === 'p',
      grants: row.grants ?? [],
      inboundForeignKeys: [],
    };
    byOid.set(row.oid, table);
    result.tables.set(row.name, table);
  }
  for (const { table_oid, ...column } of columns.rows) byOid.get(table_oid)?.columns.push(column);
  for (const { table_oid, ...foreignKey } of inbound.rows) byOid.get(table_oid)?.inboundForeignKeys.push(foreignKey);
  for (const row of constraints.rows) {
    const constraint: ConstraintInfo = {
      name: row.name,
      type: CONSTRAINT_TYPES[row.contype] ?? 'check',
      columns: row.columns ?? [],
      definition: row.definition,
      validated: row.validated,
    };
    if (row.ref_table) {
      constraint.referencedTable = row.ref_table;
      constraint.referencedColumns = row.ref_columns ?? [];
    }
    if (row.index_name) constraint.indexName = row.index_name;
    byOid.get(row.table_oid)?.constraints.push(constraint);
  }
  for (const row of indexes.rows) {
    const index: IndexInfo = {
      name: row.name,
      columns: row.columns,
      unique: row.unique,
      primary: row.primary,
      valid: row.valid,
      partial: row.partial,
      replicaIdentity: row.replident,
      definition: row.definition,
      constraint: row.constraint,
    };
    byOid.get(row.table_oid)?.indexes.push(index);
  }
  return result;
}

