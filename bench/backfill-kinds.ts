/**
 * Each kind of backfill against one plain UPDATE of the same rows, in one run: `tandem start` timed
 * from the call to its return (planning, DDL, triggers, backfill, version schema: what a user waits
 * for), against `UPDATE copy SET … = f(…)` on a copy of the table with the same key (none, for the
 * kind without one), into a column added for it first.
 *
 *   npx tsx bench/backfill-kinds.ts [rows ...]      (default: 1000000); BATCH=1000, BATCH_TIME=ms (adaptive)
 *
 * Wall time is what the goal is stated in; CPU time (the server backend's and this process's) is
 * reported beside it because on a shared machine wall time mostly measures the wait for a core.
 */
import { ENGINE_DEFAULTS, Migrator } from '../src/engine/migrator.js';
import { parseMigration } from '../src/migration/load.js';
import { silentLogger } from '../src/observe/logger.js';
import { loadavg } from 'node:os';
import { cpuSeconds, fmt, machine, table, timed, withBenchSession } from './support.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const batchSize = Number(process.env.BATCH ?? ENGINE_DEFAULTS.backfillBatchSize);
const batchTimeMs = process.env.BATCH_TIME ? Number(process.env.BATCH_TIME) : undefined;
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

async function main() {
  const rows: (string | number)[][] = [];
  await withBenchSession(async (db) => {
    for (const size of sizes.length ? sizes : [1_000_000]) {
      for (const kind of KINDS.filter((_, i) => !onlyKinds || onlyKinds.includes(i + 1))) {
        // The migrator leaves its session settings behind (search_path, lock_timeout).
        await db.query('RESET ALL');
        await db.query(`DROP TABLE IF EXISTS data, copy; DROP SCHEMA IF EXISTS tandem CASCADE; DROP SCHEMA IF EXISTS public_01_kind CASCADE`);
        for (const name of ['data', 'copy']) {
          await db.query(`CREATE TABLE ${name} (id bigint ${kind.keyed ? 'PRIMARY KEY' : ''}, v text NOT NULL, n int)`);
          await db.query(`INSERT INTO ${name} SELECT g, 'value ' || g, CASE WHEN g % 100 = 0 THEN NULL ELSE g % 1000 END FROM generate_series(1, ${size}) g`);
          await db.query(`VACUUM ANALYZE ${name}`);
        }
        await db.query(`ALTER TABLE copy ADD COLUMN ${kind.baseline.column}`);
        await db.query('CHECKPOINT');
        const column = kind.baseline.column.split(' ')[0]!;
        const beforeUpdate = await cpuSeconds(db);
        const update = await timed(() => db.query(`UPDATE copy SET ${column} = ${kind.baseline.value}`));
        const updateCpu = (await cpuSeconds(db)).server - beforeUpdate.server;
        await db.query('CHECKPOINT');

        const migrator = new Migrator(db, { ...ENGINE_DEFAULTS, backfillBatchSize: batchSize, backfillBatchTimeMs: batchTimeMs, logger: silentLogger() });
        const loaded = parseMigration(JSON.stringify({ name: '01_kind', operations: [kind.operation] }), { file: '01_kind.json', format: 'json' });
        const beforeStart = await cpuSeconds(db);
        const start = await timed(() => migrator.start(loaded));
        const afterStart = await cpuSeconds(db);
        const startCpu = afterStart.server - beforeStart.server + afterStart.client - beforeStart.client;
        const { rows: record } = await db.query(`SELECT extract(epoch FROM finished_at - started_at)::float8 AS s, batches::int AS b FROM tandem.backfills`);
        const backfillSeconds = record[0].s as number;
        rows.push([
          kind.name,
          fmt(size),
          update.seconds.toFixed(2),
          start.seconds.toFixed(2),
          backfillSeconds.toFixed(2),
          `${Math.round((100 * update.seconds) / start.seconds)}%`,
          `${updateCpu.toFixed(2)} / ${startCpu.toFixed(2)}`,
          `${Math.round((100 * updateCpu) / startCpu)}%`,
          record[0].b,
          loadavg()[0]!.toFixed(1),
        ]);
        console.error(`${kind.name}, ${fmt(size)} rows: UPDATE ${update.seconds.toFixed(2)} s, tandem start ${start.seconds.toFixed(2)} s (backfill ${backfillSeconds.toFixed(2)} s); CPU ${updateCpu.toFixed(2)} s / ${startCpu.toFixed(2)} s; load ${loadavg()[0]!.toFixed(1)}`);
        await migrator.rollback();
      }
    }
  });
  console.log(`\nBackfill kinds (batch size ${batchSize}${batchTimeMs ? `, batch time ${batchTimeMs} ms` : ''}) on ${machine()}\n`);
  console.log(table(['kind', 'rows', 'UPDATE s', 'tandem start s', 'of which backfill s', 'UPDATE / start', 'CPU s UPDATE / start', 'by CPU', 'batches', 'load'], rows));
}

await main();
