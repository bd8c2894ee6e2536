/**
 * What the sync triggers cost the application's writes: UPDATE throughput on a table before
 * `tandem start` and while a migration keeps an old and a new column in step (then with a second
 * migration stacked on it, on another table and on the same one), in one run. Single-row UPDATEs by primary key from pgbench (the app's
 * usual write), and one bulk UPDATE.
 *
 *   npx tsx bench/write-amplification.ts [seconds per pgbench run, default 10]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { ENGINE_DEFAULTS, Migrator } from '../src/engine/migrator.js';
import { parseMigration } from '../src/migration/load.js';
import { silentLogger } from '../src/observe/logger.js';
import { fmt, machine, startBenchServer, table, timed } from './support.js';

const run = promisify(execFile);
const seconds = Number(process.argv[2] ?? 10);
const rows = 1_000_000;

async function pgbench(port: number, script: string, searchPath: string | null): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-pgbench-'));
  const file = join(dir, 'update.sql');
  await writeFile(file, script);
  const env = { ...process.env, ...(searchPath ? { PGOPTIONS: `-c search_path=${searchPath}` } : {}) };
  const { stdout } = await run('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-c', '4', '-j', '2', '-T', String(seconds), '-f', file, 'postgres'], { env });
  return Number(/tps = ([\d.]+)/.exec(stdout)![1]);
}

/**
 * Where a stacked oldest-version write's time goes, on the table as it is at that point (two
 * backfills later, with the second migration's column and check, so wider and larger than at the
 * baseline): the same UPDATEs with the table's triggers disabled, with them enabled but the sync
 * function reduced to `RETURN NEW` (what the three triggers' WHEN conditions and the call cost), and
 * with the real function. Two rounds, each run right after the one before it, so that a changing
 * load shifts them less than it shifts the rows measured minutes apart.
 */
async function whereTheTimeGoes(db: pg.Client, port: number, script: string) {
  const fn = (await db.query(`SELECT pg_get_functiondef('tandem.sync_public_accounts'::regproc) AS def`)).rows[0].def as string;
  const rounds: { noTriggers: number; emptyFunction: number; full: number }[] = [];
  for (let round = 0; round < 2; round++) {
    await db.query('VACUUM accounts');
    await db.query('ALTER TABLE accounts DISABLE TRIGGER USER');
    const noTriggers = await pgbench(port, script, null);
    await db.query('ALTER TABLE accounts ENABLE TRIGGER USER');
    await db.query('VACUUM accounts');
    await db.query(`CREATE OR REPLACE FUNCTION tandem.sync_public_accounts() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$`);
    const emptyFunction = await pgbench(port, script, null);
    await db.query(fn);
    await db.query('VACUUM accounts');
    const full = await pgbench(port, script, null);
    rounds.push({ noTriggers, emptyFunction, full });
  }
  return rounds;
}

async function main() {
  // Commits that do not wait for their WAL flush: the figures measure the triggers' CPU cost, not the disk.
  const server = await startBenchServer({ synchronous_commit: 'off' });
  const db = new pg.Client({ connectionString: server.url });
  await db.connect();
  await db.query(`CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, balance int NOT NULL, note text)`);
  await db.query(`INSERT INTO accounts SELECT g, 'user' || g || '@example.com', g % 1000, 'n' FROM generate_series(1, ${rows}) g`);
  await db.query('VACUUM ANALYZE accounts');
  const oldScript = `\\set id random(1, ${rows})\nUPDATE accounts SET balance = balance + 1, email = 'u' || :id || '@example.com' WHERE id = :id;\n`;
  const newScript = `\\set id random(1, ${rows})\nUPDATE accounts SET balance = balance + 1, email_address = 'u' || :id || '@example.com' WHERE id = :id;\n`;
  const bulk = (column: string) => db.query(`UPDATE accounts SET balance = balance + 1, ${column} = ${column} WHERE id <= 100000`);

  await db.query('SELECT count(*) FROM accounts');
  await pgbench(server.port, oldScript, null); // warm-up: caches, hint bits
  await db.query('VACUUM accounts');
  const before = await pgbench(server.port, oldScript, null);
  await db.query('VACUUM accounts');
  const bulkBefore = await timed(() => bulk('email'));
  await db.query('VACUUM accounts');

  // A migration that keeps two pairs of columns in step: a renamed-and-constrained email and a widened balance.
  const migrator = new Migrator(db, { ...ENGINE_DEFAULTS, logger: silentLogger() });
  const migration = {
    name: '01_accounts',
    operations: [
      { rename_column: { table: 'accounts', from: 'email', to: 'email_address' } },
      { alter_column: { table: 'accounts', column: 'email_address', check: { name: 'email_has_at', constraint: "email_address LIKE '%@%'" }, up: 'lower(email)', down: 'email_address' } },
      { alter_column: { table: 'accounts', column: 'balance', type: 'bigint', up: 'balance', down: 'balance' } },
    ],
  };
  await migrator.start(parseMigration(JSON.stringify(migration), { file: '01_accounts.json', format: 'json' }));
  await db.query('VACUUM accounts');
  const oldVersion = await pgbench(server.port, oldScript, null);
  await db.query('VACUUM accounts');
  const newVersion = await pgbench(server.port, newScript, 'public_01_accounts,public');
  await db.query('VACUUM accounts');
  const bulkAfter = await timed(() => bulk('email'));
  // A second migration stacked on the first, on another table: its version sees accounts as the first
  // does, and writes through it go through the first one's triggers, whose WHEN now lists both versions.
  await db.query('CREATE TABLE public.ledger (id bigint PRIMARY KEY, amount int)');
  const stacked = { name: '02_ledger', operations: [{ add_column: { table: 'ledger', column: { name: 'memo', type: 'text', nullable: true } } }] };
  await migrator.start(parseMigration(JSON.stringify(stacked), { file: '02_ledger.json', format: 'json' }));
  await db.query('VACUUM accounts');
  const stackedOld = await pgbench(server.port, oldScript, null);
  await db.query('VACUUM accounts');
  const stackedNew = await pgbench(server.port, newScript, 'public_02_ledger,public');
  await migrator.rollback();
  // A second migration stacked on accounts itself: the table's sync function then holds both
  // migrations' rules as layers, and a writer through each of the three versions runs a different
  // path through them (README "Stacked migrations"). Its column's `up` reads the first migration's
  // widened balance, and the newest version writes that column itself.
  const sameTable = {
    name: '02_accounts',
    operations: [
      {
        add_column: {
          table: 'accounts',
          column: { name: 'balance_cents', type: 'bigint', nullable: true, check: { name: 'balance_cents_not_negative', constraint: 'balance_cents >= 0' } },
          up: 'balance * 100',
        },
      },
    ],
  };
  await migrator.start(parseMigration(JSON.stringify(sameTable), { file: '02_accounts.json', format: 'json' }));
  const newestScript = `\\set id random(1, ${rows})\nUPDATE accounts SET balance = balance + 1, balance_cents = balance_cents + 100, email_address = 'u' || :id || '@example.com' WHERE id = :id;\n`;
  await db.query('VACUUM accounts');
  const sameTableOldest = await pgbench(server.port, oldScript, null);
  await db.query('VACUUM accounts');
  const sameTableMiddle = await pgbench(server.port, newScript, 'public_01_accounts,public');
  await db.query('VACUUM accounts');
  const sameTableNewest = await pgbench(server.port, newestScript, 'public_02_accounts,public');
  const breakdown = await whereTheTimeGoes(db, server.port, oldScript);
  await migrator.rollback();
  // And once more without triggers, after rolling back, so the baseline is not an accident of order.
  await migrator.rollback();
  await db.query('VACUUM accounts');
  const after = await pgbench(server.port, oldScript, null);
  const baseline = (before + after) / 2;
  await db.end();
  await server.stop();

  console.error(`baseline runs: ${fmt(before)} and ${fmt(after)} tps`);
  console.log(`\nWrite amplification of the sync triggers (${fmt(rows)} rows, pgbench 4 clients × ${seconds} s) on ${machine()}\n`);
  console.log(
    table(
      ['writes', 'without triggers', 'with triggers', 'cost'],
      [
        ['single-row UPDATE, old version (tps)', fmt(baseline), fmt(oldVersion), `${(baseline / oldVersion).toFixed(2)}×`],
        ['single-row UPDATE, new version via its view (tps)', fmt(baseline), fmt(newVersion), `${(baseline / newVersion).toFixed(2)}×`],
        ['… with a second migration stacked: old version (tps)', fmt(baseline), fmt(stackedOld), `${(baseline / stackedOld).toFixed(2)}×`],
        ['… with a second migration stacked: newest version (tps)', fmt(baseline), fmt(stackedNew), `${(baseline / stackedNew).toFixed(2)}×`],
        ['… second migration stacked on accounts: oldest version (tps)', fmt(baseline), fmt(sameTableOldest), `${(baseline / sameTableOldest).toFixed(2)}×`],
        ['… second migration stacked on accounts: middle version (tps)', fmt(baseline), fmt(sameTableMiddle), `${(baseline / sameTableMiddle).toFixed(2)}×`],
        ['… second migration stacked on accounts: newest version (tps)', fmt(baseline), fmt(sameTableNewest), `${(baseline / sameTableNewest).toFixed(2)}×`],
        ['bulk UPDATE of 100k rows (rows/s)', fmt(100_000 / bulkBefore.seconds), fmt(100_000 / bulkAfter.seconds), `${(bulkAfter.seconds / bulkBefore.seconds).toFixed(2)}×`],
      ],
    ),
  );
  console.log(`\nWhere the stacked oldest-version write's time goes, on the table as it was then (each round's runs one after another)\n`);
  const cost = (base: number, tps: number) => `${(base / tps).toFixed(2)}×`;
  console.log(
    table(
      ['single-row UPDATE, oldest version (tps)', ...breakdown.map((_, i) => `round ${i + 1}`), 'cost (each round)'],
      [
        ['triggers disabled', ...breakdown.map((r) => fmt(r.noTriggers)), breakdown.map(() => '1.00×').join(', ')],
        ['three triggers, function only RETURN NEW', ...breakdown.map((r) => fmt(r.emptyFunction)), breakdown.map((r) => cost(r.noTriggers, r.emptyFunction)).join(', ')],
        ['three triggers, the two-layer function', ...breakdown.map((r) => fmt(r.full)), breakdown.map((r) => cost(r.noTriggers, r.full)).join(', ')],
      ],
    ),
  );
}

await main();
