/**
 * A rolling deploy, end to end, on a real PostgreSQL: app v1 runs through the proxy; the rename of
 * `users.email` starts under it (with a real backfill); app v2 joins on the new version; both run;
 * v1 stops; complete waits for v1's clients to drain and contracts. Then it checks what a user would:
 * no errors in either app, both versions agreeing on every row while both ran, every write there
 * with the right value, and the final table shape. Used by the end-to-end test and by run.ts.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ENGINE_DEFAULTS, Migrator } from '../../src/engine/migrator.js';
import { loadMigrationFile } from '../../src/migration/load.js';
import type { Logger } from '../../src/observe/logger.js';
import { startProxy } from '../../src/proxy/server.js';
import type { AppReport } from './app.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const migration = (name: string) => loadMigrationFile(`${root}/examples/migrations/${name}`);

export interface ScenarioOptions {
  /** A superuser URL of the database to use (empty). */
  postgresUrl: string;
  proxyPort: number;
  rows: number;
  /** How long each phase runs: v1 alone, then v1 and v2 together, then v2 alone. */
  phaseMs: number;
  logger: Logger;
  say: (line: string) => void;
}

export interface ScenarioReport {
  rows: number;
  v1: AppReport;
  v2: AppReport;
  /** Rows where the two versions disagreed, over every consistency check while both ran. */
  disagreements: number;
  consistencyChecks: number;
  /** Rows whose final value is not what the app that wrote it last expects. */
  wrongValues: number;
  finalRows: number;
  expectedRows: number;
  finalColumns: string[];
  constraints: string[];
  backfillSeconds: number;
  drainedInMs: number;
}

export async function rollingDeploy(options: ScenarioOptions): Promise<ScenarioReport> {
  const { say } = options;
  const db = new pg.Client({ connectionString: options.postgresUrl });
  await db.connect();
  const migrator = new Migrator(db, { ...ENGINE_DEFAULTS, logger: options.logger });

  say('1. the app schema (01_create_users) and its data');
  await migrator.start(await migration('01_create_users.yaml'), { complete: true });
  await db.query(
    `INSERT INTO users (name, email) SELECT 'seed-' || g, CASE WHEN g % 50 = 0 THEN NULL ELSE 'seed-' || g || '@example.com' END FROM generate_series(1, $1::int) g`,
    [options.rows],
  );
  await db.query('ANALYZE users');

  const proxy = await startProxy({
    listen: { host: '127.0.0.1', port: options.proxyPort },
    postgresUrl: options.postgresUrl,
    defaultVersion: 'latest',
    maxClientConn: 100,
    shutdownGraceMs: 1000,
    clientLoginTimeoutMs: 10_000,
    serverConnectTimeoutMs: 10_000,
    heartbeatIntervalMs: 500,
    heartbeatExpireMs: 600_000,
    versionCacheTtlMs: 5_000,
    schema: 'public',
    stateSchema: 'tandem',
    logger: options.logger,
  });
  const proxyUrl = (version: string) => `postgres://postgres@127.0.0.1:${options.proxyPort}/${new URL(options.postgresUrl).pathname.slice(1)}@${version}`;
  try {
    say('2. app v1 runs through the proxy on version 01_create_users');
    const v1 = startApp(proxyUrl('01_create_users'), 'email', 'v1');
    await v1.ready;
    await sleep(options.phaseMs);

    say(`3. tandem start 02_rename_email under v1's traffic (backfill of ${options.rows} rows)`);
    await migrator.start(await migration('02_rename_email.yaml'));
    const backfill = await db.query(`SELECT extract(epoch FROM finished_at - started_at)::float8 AS s FROM tandem.backfills ORDER BY started_at DESC LIMIT 1`);

    say('4. app v2 joins on version 02_rename_email; both run');
    const v2 = startApp(proxyUrl('02_rename_email'), 'email_address', 'v2');
    await v2.ready;
    let disagreements = 0;
    let consistencyChecks = 0;
    const until = Date.now() + options.phaseMs;
    while (Date.now() < until) {
      // Every row, through both versions' views at one instant: the new value is what `up` makes of the old.
      const { rows } = await db.query(
        `SELECT count(*)::int AS n FROM public_01_create_users.users a JOIN public_02_rename_email.users b USING (id)
          WHERE b.email_address IS DISTINCT FROM
                CASE WHEN a.email IS NULL OR a.email NOT LIKE '%@%' THEN 'unknown-' || a.id || '@example.invalid' ELSE a.email END`,
      );
      disagreements += rows[0].n as number;
      consistencyChecks++;
      await sleep(100);
    }

    say('5. v1 stops; tandem complete waits for its clients to drain, then contracts');
    const v1Report = await v1.stop();
    const drainStarted = Date.now();
    await migrator.complete({ waitForDrainMs: 30_000, staleAfterMs: 5_000 });
    const drainedInMs = Date.now() - drainStarted;
    await sleep(Math.min(options.phaseMs, 1000));
    const v2Report = await v2.stop();

    say('6. checking every write');
    const final = new Map<string, string>();
    for (const row of (await db.query<{ id: string; email_address: string }>('SELECT id, email_address FROM users')).rows) final.set(String(row.id), row.email_address);
    let wrongValues = 0;
    const expected = (id: string, email: string | null) => (email === null || !email.includes('@') ? `unknown-${id}@example.invalid` : email);
    // v1 stopped before v2, and neither touches the other's rows: the last writer of a row is its app.
    for (const [id, email] of [...Object.entries(v1Report.written), ...Object.entries(v2Report.written)]) {
      if (final.get(id) !== expected(id, email)) wrongValues++;
    }
    const columns = await db.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position`);
    // (PostgreSQL 18 lists NOT NULL among the constraints too: it is reported from pg_attribute, as on older servers.)
    const constraints = await db.query(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'public.users'::regclass AND contype <> 'n' ORDER BY conname`,
    );
    const notNull = await db.query(`SELECT attnotnull FROM pg_attribute WHERE attrelid = 'public.users'::regclass AND attname = 'email_address'`);
    return {
      rows: options.rows,
      v1: v1Report,
      v2: v2Report,
      disagreements,
      consistencyChecks,
      wrongValues,
      finalRows: final.size,
      expectedRows: options.rows + v1Report.inserted + v2Report.inserted,
      finalColumns: columns.rows.map((r) => r.column_name as string),
      constraints: [...constraints.rows.map((r) => r.def as string), ...(notNull.rows[0]?.attnotnull ? ['email_address NOT NULL'] : [])],
      backfillSeconds: backfill.rows[0]?.s ?? 0,
      drainedInMs,
    };
  } finally {
    await proxy.shutdown(1000);
    await proxy.closed.catch(() => {});
    await db.end();
  }
}

interface RunningApp {
  /** Resolves once the app has sent its first queries. */
  ready: Promise<void>;
  stop(): Promise<AppReport>;
}

function startApp(url: string, column: string, name: string): RunningApp {
  const child = spawn(process.execPath, ['--import', 'tsx', `${root}/examples/rolling-deploy/app.ts`, url, column, name], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      if (/^ready$/m.test(err)) resolve();
    });
    void exited.then((code) => reject(new Error(`app ${name} exited ${code} before it was ready: ${err || out}`)));
  });
  ready.catch(() => {});
  return {
    ready,
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      const line = out.trim().split('\n').at(-1);
      if (code !== 0 || !line) throw new Error(`app ${name} exited ${code}: ${err || out}`);
      return JSON.parse(line) as AppReport;
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
