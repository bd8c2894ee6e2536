/**
 * Table-driven operation tests, shaped like pgroll's: each case lists migrations (all but the last
 * are applied and completed first), then checks after start, after complete and after rollback,
 * each on a fresh database. Every rollback is also checked to restore the schema exactly.
 */
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { usePostgres, type PostgresFixture } from './harness.js';
import { migrationFile, ok, tandem, versionClient } from './migrations.js';
import type { CliResult } from './cli.js';

export interface CaseContext {
  url: string;
  /** A plain session (search_path public). */
  db: pg.Client;
  /** A session of the old version: the previous version schema first, or the bare schema if none. */
  old: pg.Client;
  /** A session of the new version: its version schema first. */
  new: pg.Client;
  oldSchema: string | null;
  newSchema: string;
}

export interface OpCase {
  name: string;
  setup?: string;
  migrations: { name: string; operations: object[]; version_schema?: string }[];
  afterStart?: (t: CaseContext) => Promise<void>;
  afterComplete?: (t: CaseContext) => Promise<void>;
  afterRollback?: (t: CaseContext) => Promise<void>;
  /** Extra CLI flags for the migration under test. */
  flags?: string[];
}

export function runOperationCases(title: string, cases: OpCase[]): PostgresFixture {
  const fixture = usePostgres();
  describe(title, () => {
    for (const c of cases) {
      it(`${c.name}: start, then complete`, async () => {
        const t = await prepare(fixture, c);
        try {
          await c.afterStart?.(t);
          ok(await tandem(t.url, ['complete', ...(c.flags ?? [])]));
          await c.afterComplete?.(t);
          expect(await schemaExists(t.db, t.oldSchema), 'the previous version schema is dropped').toBe(false);
          expect(await schemaExists(t.db, t.newSchema), 'the new version schema stays').toBe(true);
        } finally {
          await close(t);
        }
      });
      it(`${c.name}: start, then rollback`, async () => {
        const before = await prepareBefore(fixture, c);
        const t = await startLast(fixture, c, before.oldSchema);
        try {
          await c.afterStart?.(t);
          ok(await tandem(t.url, ['rollback']));
          expect(await snapshot(t.db), 'rollback restores the schema exactly').toEqual(before.snapshot);
          await c.afterRollback?.(t);
        } finally {
          await close(t);
        }
      });
    }
  });
  return fixture;
}

async function prepareBefore(fixture: PostgresFixture, c: OpCase) {
  if (c.setup) await fixture.query(c.setup);
  ok(await tandem(fixture.url, ['init']));
  let oldSchema: string | null = null;
  for (const m of c.migrations.slice(0, -1)) {
    ok(await tandem(fixture.url, ['start', await migrationFile(m.name, m), '--complete']));
    oldSchema = `public_${m.version_schema ?? m.name}`;
  }
  const db = new pg.Client({ connectionString: fixture.url });
  await db.connect();
  const state = await snapshot(db);
  await db.end();
  return { oldSchema, snapshot: state };
}

async function startLast(fixture: PostgresFixture, c: OpCase, oldSchema: string | null): Promise<CaseContext> {
  const last = c.migrations.at(-1)!;
  const result: CliResult = await tandem(fixture.url, ['start', await migrationFile(last.name, last), ...(c.flags ?? [])]);
  ok(result);
  const newSchema = `public_${last.version_schema ?? last.name}`;
  const db = new pg.Client({ connectionString: fixture.url });
  db.on('error', () => {});
  await db.connect();
  return {
    url: fixture.url,
    db,
    old: await versionClient(fixture.url, oldSchema),
    new: await versionClient(fixture.url, newSchema),
    oldSchema,
    newSchema,
  };
}

async function prepare(fixture: PostgresFixture, c: OpCase): Promise<CaseContext> {
  const { oldSchema } = await prepareBefore(fixture, c);
  return startLast(fixture, c, oldSchema);
}

async function close(t: CaseContext): Promise<void> {
  await Promise.all([t.db.end(), t.old.end(), t.new.end()].map((p) => p.catch(() => {})));
}

async function schemaExists(db: pg.Client, schema: string | null): Promise<boolean> {
  if (!schema) return false;
  const { rows } = await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  return rows.length > 0;
}

/**
 * Everything a migration could touch outside tandem's own state: schemas, relations, columns,
 * constraints, indexes, triggers, functions, comments and replica identity of the user schemas.
 */
export async function snapshot(db: pg.Client): Promise<Record<string, unknown>> {
  const q = async (sql: string) => (await db.query(sql)).rows;
  const userSchemas = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'tandem') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'`;
  return {
    schemas: await q(`SELECT nspname FROM pg_namespace n WHERE ${userSchemas} ORDER BY 1`),
    relations: await q(`SELECT n.nspname, c.relname, c.relkind, c.relreplident, obj_description(c.oid, 'pg_class') AS comment
                          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${userSchemas} ORDER BY 1, 2`),
    columns: await q(`SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                             pg_get_expr(d.adbin, d.adrelid) AS def, a.attidentity, a.attgenerated, col_description(c.oid, a.attnum) AS comment
                        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                       WHERE ${userSchemas} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v') ORDER BY 1, 2, 3`),
    constraints: await q(`SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid) AS def, con.convalidated
                            FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE ${userSchemas} ORDER BY 1, 2, 3`),
    indexes: await q(`SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid) AS def, i.indisvalid, i.indisreplident
                        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE ${userSchemas} ORDER BY 1, 2`),
    triggers: await q(`SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE ${userSchemas} AND NOT t.tgisinternal ORDER BY 1, 2`),
    functions: await q(`SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`),
  };
}
