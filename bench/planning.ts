/**
 * How `tandem start --dry-run` scales with the number of operations in one migration: the time to
 * load (parse and validate) a generated file, to plan it against a live schema, and to turn the plan
 * into the dry-run text and into the JSON stored with the migration. Sizes above the loader's
 * operation limit are loaded with the limits lifted, to show the curve past it.
 *
 *   npx tsx bench/planning.ts [operations ...]      (default: 2000 4000 8000 16000)
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describePlan } from '../src/cli/plan-text.js';
import { DEFAULT_RETRY } from '../src/engine/executor.js';
import { Migrator } from '../src/engine/migrator.js';
import { loadMigrationFile } from '../src/migration/load.js';
import { silentLogger } from '../src/observe/logger.js';
import { machine, startBenchServer, table, timed } from './support.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);

/** The shapes the issue reported: many columns or indexes on one table, and many raw SQL operations. */
const SHAPES: Record<string, (i: number) => unknown> = {
  add_column: (i) => ({ add_column: { table: 'items', column: { name: `c${i}`, type: 'integer', nullable: true } } }),
  create_index: (i) => ({ create_index: { name: `items_idx_${i}`, table: 'items', columns: [{ column: 'v' }] } }),
  sql: (i) => ({ sql: { up: `SELECT ${i}`, down: `SELECT ${i}`, onComplete: true } }),
};

async function main() {
  const server = await startBenchServer();
  const db = new pg.Client({ connectionString: server.url });
  await db.connect();
  const dir = await mkdtemp(join(tmpdir(), 'tandem-bench-planning-'));
  const rows: (string | number)[][] = [];
  try {
    await db.query('CREATE TABLE items (id bigint PRIMARY KEY, v text)');
    const migrator = new Migrator(db, {
      schema: 'public',
      stateSchema: 'tandem',
      lockTimeoutMs: 500,
      retry: DEFAULT_RETRY,
      backfillBatchSize: 1000,
      backfillBatchDelayMs: 0,
      stallTimeoutMs: 60_000,
      logger: silentLogger(),
    });
    for (const [shape, operation] of Object.entries(SHAPES)) {
      for (const size of sizes.length ? sizes : [2000, 4000, 8000, 16000]) {
        const file = join(dir, `01_${shape}_${size}.json`);
        await writeFile(file, JSON.stringify({ operations: Array.from({ length: size }, (_, i) => operation(i)) }, null, 2));
        const load = await timed(() => loadMigrationFile(file, { maxFileBytes: Infinity, maxOperations: Infinity }));
        const plan = await timed(() => migrator.plan(load.result));
        const text = await timed(async () => describePlan(load.result.migration.name, plan.result.versionSchema, plan.result.plan));
        const json = await timed(async () => JSON.stringify(plan.result.plan));
        const total = load.seconds + plan.seconds + text.seconds + json.seconds;
        rows.push([shape, size, s(load.seconds), s(plan.seconds), s(text.seconds), s(json.seconds), s(total)]);
        console.error(`${shape} ${size}: ${s(total)} s`);
      }
    }
  } finally {
    await db.end();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  console.log(`machine: ${machine()}`);
  console.log(table(['operations', 'count', 'load s', 'plan s', 'dry-run text s', 'plan JSON s', 'total s'], rows));
}

const s = (seconds: number) => seconds.toFixed(2);

await main();
