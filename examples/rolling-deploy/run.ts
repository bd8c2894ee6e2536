/**
 * The rolling-deploy demo on an embedded PostgreSQL, nothing to install:
 *
 *   npx tsx examples/rolling-deploy/run.ts [rows, default 100000] [seconds per phase, default 5]
 */
import { mkdtemp, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedPostgres } from '../../src/dev/embedded.js';
import { freePort } from '../../src/dev/ports.js';
import { createLogger } from '../../src/observe/logger.js';
import { rollingDeploy } from './scenario.js';

const rows = Number(process.argv[2] ?? 100_000);
const phaseMs = Number(process.argv[3] ?? 5) * 1000;

const dir = await mkdtemp(join(tmpdir(), 'tandem-rolling-'));
await chmod(dir, 0o755);
const postgres = new EmbeddedPostgres({ dataDir: join(dir, 'pgdata'), port: await freePort() });
await postgres.initialize();
await postgres.start();
try {
  const report = await rollingDeploy({
    postgresUrl: postgres.url(),
    proxyPort: await freePort(),
    rows,
    phaseMs,
    logger: createLogger({ level: 'warn' }),
    say: (line) => console.log(line),
  });
  console.log(`
rows at the start:            ${report.rows}
app v1: queries ${report.v1.queries}, inserts ${report.v1.inserted}, errors ${report.v1.errors}
app v2: queries ${report.v2.queries}, inserts ${report.v2.inserted}, errors ${report.v2.errors}
both versions compared ${report.consistencyChecks} times while both ran: ${report.disagreements} rows disagreed
rows at the end: ${report.finalRows} (expected ${report.expectedRows}); values not as last written: ${report.wrongValues}
backfill: ${report.backfillSeconds.toFixed(2)} s; complete waited ${report.drainedInMs} ms for v1's clients to leave
final columns: ${report.finalColumns.join(', ')}
final constraints: ${report.constraints.join('; ')}`);
  if (report.v1.errors || report.v2.errors) console.log(`errors: ${[...report.v1.firstErrors, ...report.v2.firstErrors].join('\n')}`);
} finally {
  await postgres.stop();
  await rm(dir, { recursive: true, force: true });
}
