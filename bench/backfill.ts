/**
 * Backfill throughput: tandem's batched, resumable backfill (through the sync trigger) against one
 * plain `UPDATE … SET new = f(old)` over a copy of the same table, at several sizes, in one run.
 *
 *   npx tsx bench/backfill.ts [rows ...]      (default: 100000 1000000 5000000)
 */
import { ENGINE_DEFAULTS, Migrator } from '../src/engine/migrator.js';
import { parseMigration } from '../src/migration/load.js';
import { silentLogger } from '../src/observe/logger.js';
import { fmt, machine, table, timed, withBenchSession } from './support.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const batchSize = Number(process.env.BATCH ?? 1000);

async function main() {
  const rows: (string | number)[][] = [];
  await withBenchSession(async (db) => {
    for (const size of sizes.length ? sizes : [100_000, 1_000_000, 5_000_000]) {
      for (const name of ['data', 'copy']) {
        await db.query(`DROP TABLE IF EXISTS ${name}; DROP SCHEMA IF EXISTS tandem CASCADE; DROP SCHEMA IF EXISTS public_01_upper CASCADE`);
        await db.query(`CREATE TABLE ${name} (id bigint PRIMARY KEY, v text NOT NULL, n int NOT NULL)`);
        await db.query(`INSERT INTO ${name} SELECT g, 'value ' || g, g % 1000 FROM generate_series(1, ${size}) g`);
        await db.query(`VACUUM ANALYZE ${name}`);
      }
      await db.query('CHECKPOINT');
      await db.query('ALTER TABLE copy ADD COLUMN w text');
      const baseline = await timed(() => db.query('UPDATE copy SET w = upper(v)'));
      await db.query('CHECKPOINT');

      const migrator = new Migrator(db, { ...ENGINE_DEFAULTS, backfillBatchSize: batchSize, logger: silentLogger() });
      const loaded = parseMigration(JSON.stringify({ name: '01_upper', operations: [{ add_column: { table: 'data', up: 'upper(v)', column: { name: 'w', type: 'text', nullable: true } } }] }), {
        file: '01_upper.json',
        format: 'json',
      });
      await migrator.start(loaded);
      const { rows: timing } = await db.query(`SELECT extract(epoch FROM finished_at - started_at)::float8 AS s, rows_done::int AS n, batches::int AS b FROM tandem.backfills`);
      const tandemSeconds = timing[0].s as number;
      const baselineRate = size / baseline.seconds;
      const tandemRate = size / tandemSeconds;
      rows.push([fmt(size), fmt(baselineRate), fmt(tandemRate), `${Math.round((100 * tandemRate) / baselineRate)}%`, timing[0].b]);
      console.error(`${fmt(size)} rows: UPDATE ${baseline.seconds.toFixed(2)} s, tandem backfill ${tandemSeconds.toFixed(2)} s`);
      await migrator.rollback();
    }
  });
  console.log(`\nBackfill throughput (batch size ${batchSize}) on ${machine()}\n`);
  console.log(table(['rows', 'one UPDATE rows/s', 'tandem backfill rows/s', 'tandem / UPDATE', 'batches'], rows));
}

await main();
