/**
 * Real migration histories of public apps (test/fixtures/histories, each with its licence), as a
 * team adopting tandem would bring them: `tandem convert <folder>` turns the history into
 * migrations, and `tandem migrate --complete` applies them. Each must end in exactly the schema
 * the plain SQL gives:
 * - file by file: each file's migrations applied alone, on a copy of the database the plain SQL of
 *   the files before it built;
 * - as one chain, on an empty database and again with rows generated into every table before each
 *   migration, so that backfills, NOT NULL changes and review placeholders meet data.
 */
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { convertSql, type ConvertedMigration } from '../../src/convert/convert.js';
import { toYaml } from '../../src/convert/emit.js';
import { readHistory, type HistoryEntry } from '../../src/convert/history.js';
import { lintSql } from '../../src/lint/lint.js';
import { PLACEHOLDER_PREFIX } from '../../src/migration/placeholders.js';
import { usePostgres } from '../support/harness.js';
import { ok, tandem } from '../support/migrations.js';
import { fillTables } from '../support/rows.js';
import { snapshotSchema } from '../support/schema-snapshot.js';

/** Dozens of migrations, each a start and a complete: minutes on a loaded 2-core machine, not the default minute. */
const HISTORY_TIMEOUT_MS = 600_000;
const FIXTURES = new URL('../fixtures/histories/', import.meta.url).pathname;
const HISTORIES = [
  { name: 'umami (Prisma)', dir: join(FIXTURES, 'umami', 'migrations'), layout: 'prisma', files: 19 },
  { name: 'ai-chatbot (Drizzle)', dir: join(FIXTURES, 'ai-chatbot', 'migrations'), layout: 'drizzle', files: 9 },
] as const;

/**
 * What a person does with each REVIEW placeholder before running the migration: here, the value
 * existing rows get for a new NOT NULL column is an ordinary value of its type.
 */
function review(migration: ConvertedMigration): ConvertedMigration {
  for (const converted of migration.operations) {
    const body = converted.body as { up?: unknown; column?: { type: string } };
    if (converted.kind === 'add_column' && typeof body.up === 'string' && body.up.startsWith(PLACEHOLDER_PREFIX)) body.up = valueOfType(body.column!.type);
  }
  return migration;
}

function valueOfType(type: string): string {
  const t = type.toLowerCase();
  if (t.endsWith('[]')) return `'{}'`;
  if (/int|serial|numeric|decimal|real|double|float/.test(t)) return '0';
  if (/bool/.test(t)) return 'false';
  if (/uuid/.test(t)) return 'gen_random_uuid()';
  if (/timestamp|date/.test(t)) return 'now()';
  if (/json/.test(t)) return `'{}'`;
  if (/char|text/.test(t)) return `''`;
  // Anything else in an ORM's history is one of its enums: its first label.
  return `(enum_range(NULL::${type}))[1]`;
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

describe.each(HISTORIES)('the $name history', (history) => {
  const pg = usePostgres();

  async function convertFile(entry: HistoryEntry): Promise<ConvertedMigration[]> {
    return (await convertSql(await readFile(entry.file, 'utf8'), entry.file, { name: entry.name, schema: 'public' })).migrations;
  }

  /** Adds the file's migrations, reviewed, to the folder `dir` (a new one by default) and applies what is new with migrate --complete. */
  async function applyWithTandem(url: string, migrations: ConvertedMigration[], dir?: string): Promise<void> {
    const folder = dir ?? (await mkdtemp(join(tmpdir(), 'tandem-history-')));
    for (const migration of migrations) await writeFile(join(folder, `${migration.name}.yaml`), toYaml(review(migration)));
    ok(await tandem(url, ['migrate', folder, '--complete']));
  }

  it('lints file by file, and says where the history changes data in one statement or locks a referenced table without lock_timeout', async () => {
    const { entries } = await readHistory(history.dir);
    const rules = new Set<string>();
    for (const entry of entries) for (const finding of await lintSql(await readFile(entry.file, 'utf8'), entry.file)) rules.add(finding.rule);
    expect(rules).toContain('missing-lock-timeout');
    if (history.layout === 'prisma') {
      const teamRedesign = entries.find((e) => e.name === '04_team_redesign')!;
      const findings = await lintSql(await readFile(teamRedesign.file, 'utf8'), teamRedesign.file);
      expect(findings.filter((f) => f.rule === 'unbatched-data-change').map((f) => f.message)).toEqual(['UPDATE of website in one statement']);
    }
  });

  it('is read in the order its tool runs it', async () => {
    const read = await readHistory(history.dir);
    expect(read.layout).toBe(history.layout);
    expect(read.entries).toHaveLength(history.files);
    const names = read.entries.map((e) => e.name);
    expect([...names].sort()).toEqual(names);
  });

  /** Runs `body` with a client on `url`, then closes it (a database must have no session left to be copied). */
  async function withClient<T>(url: string, body: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await connect(url);
    try {
      return await body(client);
    } finally {
      await client.end();
    }
  }

  it('converts file by file, and each file applied alone gives the schema its plain SQL gives', async () => {
    const url = pg.url;
    const { entries } = await readHistory(history.dir);
    const rawName = new URL(url).pathname.slice(1);
    for (const [index, entry] of entries.entries()) {
      // tandem runs on a copy of what the plain SQL of the earlier files built; the original gets this file's plain SQL.
      const copy = `${rawName}_file${index}`;
      await withClient(pg.server.url(), (admin) => admin.query(`CREATE DATABASE "${copy}" TEMPLATE "${rawName}"`));
      const copyUrl = pg.server.url(copy);
      ok(await tandem(copyUrl, ['init']));
      await applyWithTandem(copyUrl, await convertFile(entry));
      const sql = await readFile(entry.file, 'utf8');
      const expected = await withClient(url, async (raw) => (await raw.query(sql), snapshotSchema(raw, 'public')));
      expect(await withClient(copyUrl, (converted) => snapshotSchema(converted, 'public')), entry.name).toEqual(expected);
      await withClient(pg.server.url(), (admin) => admin.query(`DROP DATABASE "${copy}" WITH (FORCE)`));
    }
  }, HISTORY_TIMEOUT_MS);

  /** The schema the whole history's plain SQL builds, in a database of its own (named after `url`'s). */
  async function plainSqlSchema(entries: HistoryEntry[], url: string) {
    const name = `${new URL(url).pathname.slice(1)}_plain`;
    await withClient(pg.server.url(), (admin) => admin.query(`CREATE DATABASE "${name}"`));
    return withClient(pg.server.url(name), async (raw) => {
      for (const entry of entries) await raw.query(await readFile(entry.file, 'utf8'));
      return snapshotSchema(raw, 'public');
    });
  }

  it('applies as one chain with migrate --complete, to the schema the plain SQL gives', async () => {
    const url = pg.url;
    const { entries } = await readHistory(history.dir);
    const dir = await mkdtemp(join(tmpdir(), 'tandem-history-'));
    for (const entry of entries) {
      for (const migration of await convertFile(entry)) await writeFile(join(dir, `${migration.name}.yaml`), toYaml(review(migration)));
    }
    expect((await readdir(dir)).length).toBeGreaterThanOrEqual(entries.length);
    ok(await tandem(url, ['init']));
    ok(await tandem(url, ['migrate', dir, '--complete']));
    expect(await withClient(url, (db) => snapshotSchema(db, 'public'))).toEqual(await plainSqlSchema(entries, url));
  }, HISTORY_TIMEOUT_MS);

  it('applies as one chain on tables that hold rows, written before every file', async () => {
    const url = pg.url;
    const { entries } = await readHistory(history.dir);
    ok(await tandem(url, ['init']));
    const folder = await mkdtemp(join(tmpdir(), 'tandem-history-'));
    let rows = 0;
    for (const entry of entries) {
      rows += await withClient(url, (db) => fillTables(db, 'public', 200));
      await applyWithTandem(url, await convertFile(entry), folder);
    }
    expect(rows).toBeGreaterThan(0);
    expect(await withClient(url, (db) => snapshotSchema(db, 'public'))).toEqual(await plainSqlSchema(entries, url));
  }, HISTORY_TIMEOUT_MS);
});
