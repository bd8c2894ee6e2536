/**
 * The check after complete: every object the migration created (plan.expect) exists under its final
 * name. A complete whose steps all ran but left one missing has lost something the new version relies
 * on; it is reported as a failure rather than passing silently.
 */
import type { Queryable } from '../db/connection.js';
import { describeLocation } from '../errors/index.js';
import type { ExpectedObject } from '../core/steps.js';

export interface MissingObject {
  object: ExpectedObject;
  /** What the catalog shows instead. */
  reason: string;
}

export async function missingObjects(db: Queryable, schema: string, expected: ExpectedObject[]): Promise<MissingObject[]> {
  const missing: MissingObject[] = [];
  for (const object of expected) {
    const reason = await whyMissing(db, schema, object);
    if (reason) missing.push({ object, reason });
  }
  return missing;
}

/** One line per missing object: what, where it came from, and what the catalog shows. */
export function describeMissing({ object, reason }: MissingObject): string {
  const what = object.kind === 'table' ? `table "${object.table}"` : `${object.kind} "${object.name}" of table "${object.table}"`;
  const from = describeLocation({ operation: object.origin.operation, kind: object.origin.kind });
  return `${what} (created by ${from}): ${reason}`;
}

async function whyMissing(db: Queryable, schema: string, object: ExpectedObject): Promise<string | undefined> {
  const { rows: tables } = await db.query<{ oid: number | null }>(`SELECT to_regclass(format('%I.%I', $1::text, $2::text))::oid::int AS oid`, [schema, object.table]);
  const oid = tables[0]?.oid ?? null;
  if (oid === null) return `table "${object.table}" does not exist in schema "${schema}"`;
  switch (object.kind) {
    case 'table':
      return undefined;
    case 'column': {
      const { rows } = await db.query(`SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped`, [oid, object.name]);
      return rows.length ? undefined : `the table has no column "${object.name}"`;
    }
    case 'constraint': {
      const { rows } = await db.query<{ validated: boolean }>(`SELECT convalidated AS validated FROM pg_constraint WHERE conrelid = $1 AND conname = $2`, [oid, object.name]);
      if (rows[0]) return rows[0].validated ? undefined : 'it exists but was never validated (NOT VALID)';
      const { rows: temporary } = await db.query<{ conname: string }>(`SELECT conname FROM pg_constraint WHERE conrelid = $1 AND conname LIKE '\\_tandem\\_%' ORDER BY 1`, [oid]);
      const left = temporary.length ? `; constraints still under temporary names: ${temporary.map((r) => r.conname).join(', ')}` : '';
      return `the table has no constraint of that name${left}`;
    }
    case 'index': {
      const { rows } = await db.query<{ table: string; valid: boolean }>(
        `SELECT i.indrelid::regclass::text AS table, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
        [schema, object.name],
      );
      const on = object.columns?.length ? ` (it was built on ${object.columns.join(', ')}: an index goes when a column it is built on is dropped or replaced)` : '';
      if (!rows[0]) return `no index of that name exists${on}`;
      if (!rows[0].valid) return 'it exists but is INVALID (an interrupted concurrent build)';
      const { rows: onTable } = await db.query(`SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1 AND c.relname = $2`, [oid, object.name]);
      return onTable.length ? undefined : `it exists on ${rows[0].table}, not on this table`;
    }
  }
}
