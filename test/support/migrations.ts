import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { runCli, type CliResult } from './cli.js';

/** Writes a migration document to a temporary file and returns its path. */
export async function migrationFile(name: string, document: object, extension = 'json'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-migration-'));
  const file = join(dir, `${name}.${extension}`);
  await writeFile(file, extension === 'json' ? JSON.stringify(document, null, 2) : String(document));
  return file;
}

/** A table `big` of `rows` rows keyed by id, and the migration whose add_column backfills `w = upper(v)` in it. */
export function upperBackfill(rows: number) {
  return {
    setup: `CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL);
      INSERT INTO big SELECT g, 'value ' || g FROM generate_series(1, ${rows}) g; ANALYZE big;`,
    migration: { name: '01_upper', operations: [{ add_column: { table: 'big', up: 'upper(v)', column: { name: 'w', type: 'text' } } }] },
  };
}

/** A temporary migrations folder holding `files` (name → text). */
export async function migrationFolder(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-folder-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

/** `tandem <command> FILE` for a migration given inline. */
export async function tandem(url: string, args: string[]): Promise<CliResult> {
  return runCli(args, { postgresUrl: url });
}

export async function start(url: string, name: string, operations: object[], extra: string[] = []): Promise<CliResult> {
  const file = await migrationFile(name, { operations });
  return tandem(url, ['start', file, ...extra]);
}

/** Fails the test with the CLI's own words when a command did not succeed. */
export function ok(result: CliResult): CliResult {
  if (result.code !== 0) throw new Error(`tandem exited ${result.code}:\n${result.stderr}${result.stdout}`);
  return result;
}

/** A client whose search_path puts the given version schema first, as the proxy would. */
export async function versionClient(url: string, versionSchema: string | null, schema = 'public'): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: url,
    ...(versionSchema ? { options: `-c search_path=${versionSchema},${schema}` } : {}),
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}

export interface ColumnShape {
  name: string;
  type: string;
  nullable: boolean;
  default: string | null;
}

/** The columns of a table or view, as information_schema reports them. */
export async function columnsOf(db: pg.Client | pg.Pool, schema: string, table: string): Promise<ColumnShape[]> {
  const { rows } = await db.query<ColumnShape>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable,
            pg_get_expr(d.adbin, d.adrelid) AS default
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [schema, table],
  );
  return rows;
}

export async function columnNames(db: pg.Client, schema: string, table: string): Promise<string[]> {
  return (await columnsOf(db, schema, table)).map((c) => c.name);
}

export async function schemaExists(db: pg.Client, schema: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  return rows.length > 0;
}

/** Constraint names and definitions of a table. */
export async function constraintsOf(db: pg.Client, schema: string, table: string): Promise<Record<string, string>> {
  // pg_get_constraintdef says NOT VALID for a constraint not validated yet.
  const { rows } = await db.query<{ name: string; def: string }>(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
      WHERE conrelid = format('%I.%I', $1::text, $2::text)::regclass AND contype <> 'n' ORDER BY conname`,
    [schema, table],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.def]));
}

export async function indexesOf(db: pg.Client, schema: string, table: string): Promise<Record<string, string>> {
  const { rows } = await db.query<{ name: string; def: string }>(
    `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = format('%I.%I', $1::text, $2::text)::regclass ORDER BY c.relname`,
    [schema, table],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.def]));
}

/** Names of triggers on a table (excluding internal ones). */
export async function triggersOf(db: pg.Client, schema: string, table: string): Promise<string[]> {
  const { rows } = await db.query<{ tgname: string }>(
    `SELECT tgname FROM pg_trigger WHERE tgrelid = format('%I.%I', $1::text, $2::text)::regclass AND NOT tgisinternal ORDER BY tgname`,
    [schema, table],
  );
  return rows.map((r) => r.tgname);
}
