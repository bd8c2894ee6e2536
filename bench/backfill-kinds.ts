/**
 * Each kind of backfill against one plain UPDATE of the same rows, in one run: `tandem start` timed
 * from the call to its return (planning, DDL, triggers, backfill, version schema: what a user waits
 * for), against `UPDATE copy SET … = f(…)` on a copy of the table with the same key (none, for the
 * kind without one), into a column added for it first.
 *
 *   npx tsx bench/backfill-kinds.ts [rows ...]      (default: 1000000); BATCH=1000, BATCH_TIME=ms (adaptive),
 *                                                   KINDS=1,3, REPEAT=3 (each side's best of three),
 *                                                   STEPS=1 (print start's steps with their times; STEPS=json: as JSON)
 *
 * Wall time is what the goal is stated in; CPU time (the server backend's and this process's) is
 * reported beside it because on a shared machine wall time mostly measures the wait for a core.
 */
import { ENGINE_DEFAULTS, Migrator } from '../src/engine/migrator.js';
import { parseMigration } from '../src/migration/load.js';
import { initStateSchema } from '../src/state/schema.js';
import { createLogger, silentLogger } from '../src/observe/logger.js';
import { loadavg } from 'node:os';
import type pg from 'pg';
import { cpuSeconds, fmt, machine, table, timed, withBenchSession } from './support.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const batchSize = Number(process.env.BATCH ?? ENGINE_DEFAULTS.backfillBatchSize);
const batchTimeMs = process.env.BATCH_TIME ? Number(process.env.BATCH_TIME) : undefined;
/** REPEAT=3: measure each row three times and keep each side's best (wall and CPU alike). */
const repeat = Math.max(1, Number(process.env.REPEAT ?? 1));
/** KINDS=1,3: only these kinds (numbered from 1 as listed below), for a long run of the slow ones. */
const onlyKinds = process.env.KINDS?.split(',').map(Number);

interface Kind {
  name: string;
  /** Columns after `id bigint`; the key (if any) is added by `keyed`. */
  keyed: boolean;
  operation: object;
  /** The new column the plain UPDATE fills, and the value it computes. */
  baseline: { column: string; value: string };
}

const KINDS: Kind[] = [
  {
    name: 'add_column with up',
    keyed: true,
    operation: { add_column: { table: 'data', up: 'upper(v)', column: { name: 'w', type: 'text', nullable: true } } },
    baseline: { column: 'w text', value: 'upper(v)' },
  },
  {
    name: 'alter_column int → bigint (up/down)',
    keyed: true,
    operation: { alter_column: { table: 'data', column: 'n', type: 'bigint', up: 'n', down: 'CAST(n AS integer)' } },
    baseline: { column: 'n2 bigint', value: 'n' },
  },
  {
    name: 'alter_column NOT NULL with a check',
    keyed: true,
    operation: { alter_column: { table: 'data', column: 'n', nullable: false, check: { name: 'n_positive', constraint: 'n >= 0' }, up: 'coalesce(n, 0)', down: 'n' } },
    baseline: { column: 'n2 int', value: 'coalesce(n, 0)' },
  },
  {
    name: 'add_column, table without a key (ctid)',
    keyed: false,
    operation: { add_column: { table: 'data', up: 'upper(v)', column: { name: 'w', type: 'text', nullable: true } } },
    baseline: { column: 'w text', value: 'upper(v)' },
  },
];

/**
 * What the server did on its own while `start` ran: autovacuum and autoanalyze of either table (the
 * copy's million dead rows from the UPDATE invite one) and checkpoints. Each competes with the
 * backfill for the same two cores and the disk, so a row that has one is not comparable with one that has not.
 */
async function backgroundWork(db: pg.Client): Promise<Record<string, number>> {
  // The statistics are a snapshot per transaction: read them fresh.
  await db.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await db.query<{ name: string; n: string }>(
    `SELECT relname || ' ' || kind AS name, n FROM pg_stat_user_tables,
            LATERAL (VALUES ('autovacuum', autovacuum_count), ('autoanalyze', autoanalyze_count)) AS k(kind, n)
      WHERE relname IN ('data', 'copy')
     UNION ALL
     SELECT 'checkpoint', (SELECT num_timed + num_requested FROM pg_stat_checkpointer)`,
  );
  return Object.fromEntries(rows.map((r) => [r.name, Number(r.n)]));
}

/** The checkpointer reports a checkpoint to the statistics a little after it ends: wait for the bench's own two. */
async function afterCheckpoints(db: pg.Client, checkpoints: number): Promise<Record<string, number>> {
  for (let i = 0; ; i++) {
    const work = await backgroundWork(db);
    if (work.checkpoint! >= checkpoints || i === 50) return work;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function backgroundSince(before: Record<string, number>, after: Record<string, number>): string[] {
  return Object.keys(after).filter((name) => after[name]! > (before[name] ?? 0));
}

interface Measured {
  update: number;
  updateCpu: number;
  start: number;
  startCpu: number;
  backfill: number;
  batches: number;
  background: string[];
}

/** One UPDATE of the copy and one `tandem start` of the table, each on freshly loaded rows. */
async function measure(db: pg.Client, kind: Kind, size: number): Promise<Measured> {
  // The migrator leaves its session settings behind (search_path, lock_timeout).
  await db.query('RESET ALL');
  await db.query(`DROP TABLE IF EXISTS data, copy; DROP SCHEMA IF EXISTS tandem CASCADE; DROP SCHEMA IF EXISTS public_01_kind CASCADE`);
  for (const name of ['data', 'copy']) {
    await db.query(`CREATE TABLE ${name} (id bigint ${kind.keyed ? 'PRIMARY KEY' : ''}, v text NOT NULL, n int)`);
    await db.query(`INSERT INTO ${name} SELECT g, 'value ' || g, CASE WHEN g % 100 = 0 THEN NULL ELSE g % 1000 END FROM generate_series(1, ${size}) g`);
    await db.query(`VACUUM ANALYZE ${name}`);
  }
  await db.query(`ALTER TABLE copy ADD COLUMN ${kind.baseline.column}`);
  const checkpointsBefore = (await backgroundWork(db)).checkpoint!;
  await db.query('CHECKPOINT');
  const column = kind.baseline.column.split(' ')[0]!;
  const beforeUpdate = await cpuSeconds(db);
  const update = await timed(() => db.query(`UPDATE copy SET ${column} = ${kind.baseline.value}`));
  const updateCpu = (await cpuSeconds(db)).server - beforeUpdate.server;
  await db.query('CHECKPOINT');
  const backgroundBefore = await afterCheckpoints(db, checkpointsBefore + 2);

  // The state schema exists, as after `tandem init` or any earlier migration: creating it (about
  // 50 ms, once per database) is not part of what a migration costs.
  await initStateSchema(db, ENGINE_DEFAULTS.stateSchema);
  const migrator = new Migrator(db, { ...ENGINE_DEFAULTS, backfillBatchSize: batchSize, backfillBatchTimeMs: batchTimeMs, logger: process.env.STEPS ? createLogger({ format: process.env.STEPS === 'json' ? 'json' : 'text' }) : silentLogger() });
  const loaded = parseMigration(JSON.stringify({ name: '01_kind', operations: [kind.operation] }), { file: '01_kind.json', format: 'json' });
  const beforeStart = await cpuSeconds(db);
  const start = await timed(() => migrator.start(loaded));
  const afterStart = await cpuSeconds(db);
  const background = backgroundSince(backgroundBefore, await backgroundWork(db));
  const startCpu = afterStart.server - beforeStart.server + afterStart.client - beforeStart.client;
  const { rows: record } = await db.query(`SELECT extract(epoch FROM finished_at - started_at)::float8 AS s, batches::int AS b FROM tandem.backfills`);
  await migrator.rollback();
  return { update: update.seconds, updateCpu, start: start.seconds, startCpu, backfill: record[0].s as number, batches: record[0].b as number, background };
}

async function main() {
  const rows: (string | number)[][] = [];
  await withBenchSession(async (db) => {
    for (const size of sizes.length ? sizes : [1_000_000]) {
      for (const kind of KINDS.filter((_, i) => !onlyKinds || onlyKinds.includes(i + 1))) {
        const tries: Measured[] = [];
        for (let i = 0; i < repeat; i++) {
          const m = await measure(db, kind, size);
          tries.push(m);
          console.error(`${kind.name}, ${fmt(size)} rows: UPDATE ${m.update.toFixed(2)} s, tandem start ${m.start.toFixed(2)} s (backfill ${m.backfill.toFixed(2)} s); CPU ${m.updateCpu.toFixed(2)} s / ${m.startCpu.toFixed(2)} s; load ${loadavg()[0]!.toFixed(1)}; during start: ${m.background.join(', ') || '–'}`);
        }
        // Each side's best try: what the work costs when nothing else got in its way.
        const best = (pick: (m: Measured) => number) => Math.min(...tries.map(pick));
        const fastest = tries.reduce((a, b) => (b.start < a.start ? b : a));
        const update = best((m) => m.update);
        const updateCpu = best((m) => m.updateCpu);
        const startCpu = best((m) => m.startCpu);
        rows.push([
          kind.name,
          fmt(size),
          update.toFixed(2),
          fastest.start.toFixed(2),
          fastest.backfill.toFixed(2),
          `${Math.round((100 * update) / fastest.start)}%`,
          `${updateCpu.toFixed(2)} / ${startCpu.toFixed(2)}`,
          `${Math.round((100 * updateCpu) / startCpu)}%`,
          fastest.batches,
          loadavg()[0]!.toFixed(1),
          [...new Set(tries.flatMap((m) => m.background))].join(', ') || '–',
        ]);
      }
    }
  });
  console.log(`\nBackfill kinds (batch size ${batchSize}${batchTimeMs ? `, batch time ${batchTimeMs} ms` : ''}${repeat > 1 ? `, best of ${repeat}` : ''}) on ${machine()}\n`);
  console.log(table(['kind', 'rows', 'UPDATE s', 'tandem start s', 'of which backfill s', 'UPDATE / start', 'CPU s UPDATE / start', 'by CPU', 'batches', 'load', 'during start'], rows));
}

await main();
