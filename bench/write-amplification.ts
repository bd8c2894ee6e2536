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
import { cpuSeconds, fmt, machine, startBenchServer, table, timed } from './support.js';

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
 * Server CPU per single-row UPDATE, in µs: `CPU_UPDATES` UPDATEs by primary key, each committed, in
 * one DO block of one session whose search_path names `searchPath` (a version) first. Unlike
 * throughput, CPU time does not fall when other work shares the cores, so these figures compare
 * across a run whose load changes. `set` is the SET list, with `_id` the row's id.
 */
const CPU_UPDATES = 20_000;
async function cpuPerUpdate(url: string, searchPath: string | null, set: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    if (searchPath) await client.query(`SET search_path = ${searchPath}`);
    const before = await cpuSeconds(client);
    await client.query(
      `DO $$ DECLARE _id bigint; BEGIN
         FOR i IN 1..${CPU_UPDATES} LOOP
           _id := 1 + floor(random() * ${rows})::bigint;
           UPDATE accounts SET ${set} WHERE accounts.id = _id;
           COMMIT;
         END LOOP;
       END $$`,
    );
    return (((await cpuSeconds(client)).server - before.server) / CPU_UPDATES) * 1e6;
  } finally {
    await client.end();
  }
}

/**
 * Where a stacked write's time goes, on the table as it is then (two backfills later, with the
 * second migration's column and check: wider and larger than at the baseline), in server CPU per
 * UPDATE: the oldest version's UPDATE with the table's triggers disabled, with them enabled but the
 * sync function reduced to `RETURN NEW` (what the sync trigger's WHEN condition and the call
 * cost), and with the real two-layer function.
 */
async function whereTheTimeGoes(db: pg.Client, url: string, set: string) {
  const fn = (await db.query(`SELECT pg_get_functiondef('tandem.sync_public_accounts'::regproc) AS def`)).rows[0].def as string;
  await db.query('ALTER TABLE accounts DISABLE TRIGGER USER');
  const noTriggers = await cpuPerUpdate(url, null, set);
  await db.query('ALTER TABLE accounts ENABLE TRIGGER USER');
  await db.query(`CREATE OR REPLACE FUNCTION tandem.sync_public_accounts() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$`);
  const emptyFunction = await cpuPerUpdate(url, null, set);
  await db.query(fn);
  const full = await cpuPerUpdate(url, null, set);
  return { noTriggers, emptyFunction, full };
}

const tableSize = async (db: pg.Client) => (await db.query(`SELECT pg_size_pretty(pg_table_size('accounts')) AS size`)).rows[0].size as string;

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
  console.error(`accounts at the baseline: ${await tableSize(db)}`);
  await pgbench(server.port, oldScript, null); // warm-up: caches, hint bits
  await db.query('VACUUM accounts');
  const before = await pgbench(server.port, oldScript, null);
  const oldSet = `balance = balance + 1, email = 'u' || _id || '@example.com'`;
  const newSet = `balance = balance + 1, email_address = 'u' || _id || '@example.com'`;
  const newestSet = `balance = balance + 1, balance_cents = balance_cents + 100, email_address = 'u' || _id || '@example.com'`;
  const cpu = { baseline: await cpuPerUpdate(server.url, null, oldSet) } as Record<string, number>;
  await db.query('VACUUM accounts');
  const bulkBefore = await timed(() => bulk('email'));
  await db.query('VACUUM accounts');

  // A migration that keeps two pairs of columns in step: a renamed-and-constrained email and a widened balance.
  // The engine on a connection of its own: it sets lock_timeout on its session, and the bench's own
  // VACUUMs must wait for an autovacuum of the table rather than fail.
  const engine = new pg.Client({ connectionString: server.url });
  await engine.connect();
  const migrator = new Migrator(engine, { ...ENGINE_DEFAULTS, logger: silentLogger() });
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
  cpu.oldVersion = await cpuPerUpdate(server.url, null, oldSet);
  cpu.newVersion = await cpuPerUpdate(server.url, 'public_01_accounts,public', newSet);
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
  cpu.sameTableMiddle = await cpuPerUpdate(server.url, 'public_01_accounts,public', newSet);
  cpu.sameTableNewest = await cpuPerUpdate(server.url, 'public_02_accounts,public', newestSet);
  console.error(`accounts with both migrations: ${await tableSize(db)}`);
  const breakdown = await whereTheTimeGoes(db, server.url, oldSet);
  await migrator.rollback();
  // And once more without triggers, after rolling back, so the baseline is not an accident of order.
  await migrator.rollback();
  await db.query('VACUUM accounts');
  const after = await pgbench(server.port, oldScript, null);
  const baseline = (before + after) / 2;
  await Promise.all([db.end(), engine.end()]);
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
  console.log(`\nServer CPU per single-row UPDATE (µs; ${fmt(CPU_UPDATES)} UPDATEs each, one session), which other load on the machine does not inflate\n`);
  const us = (n: number) => n.toFixed(0);
  const against = (base: number, n: number) => `${(n / base).toFixed(2)}×`;
  console.log(
    table(
      ['writes', 'µs per UPDATE', 'against the baseline', 'against no triggers on the table then'],
      [
        ['baseline: no migration', us(cpu.baseline!), '1.00×', ''],
        ['one migration: old version', us(cpu.oldVersion!), against(cpu.baseline!, cpu.oldVersion!), ''],
        ['one migration: new version via its view', us(cpu.newVersion!), against(cpu.baseline!, cpu.newVersion!), ''],
        ['stacked on accounts: triggers disabled, oldest version', us(breakdown.noTriggers), against(cpu.baseline!, breakdown.noTriggers), '1.00×'],
        ['stacked on accounts: the trigger, function only RETURN NEW', us(breakdown.emptyFunction), against(cpu.baseline!, breakdown.emptyFunction), against(breakdown.noTriggers, breakdown.emptyFunction)],
        ['stacked on accounts: oldest version', us(breakdown.full), against(cpu.baseline!, breakdown.full), against(breakdown.noTriggers, breakdown.full)],
        ['stacked on accounts: middle version via its view', us(cpu.sameTableMiddle!), against(cpu.baseline!, cpu.sameTableMiddle!), against(breakdown.noTriggers, cpu.sameTableMiddle!)],
        ['stacked on accounts: newest version via its view', us(cpu.sameTableNewest!), against(cpu.baseline!, cpu.sameTableNewest!), against(breakdown.noTriggers, cpu.sameTableNewest!)],
      ],
    ),
  );
}

await main();
