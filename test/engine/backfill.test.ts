import { describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, start, tandem, upperBackfill } from '../support/migrations.js';
import { spawnCli, waitFor } from '../support/spawn.js';
import { freePort } from '../support/postgres.js';

describe('backfill', () => {
  const pg = usePostgres();
  const rows = 120_000;
  const { setup: bigTable, migration: addUpper } = upperBackfill(rows);

  async function progress() {
    const result = await pg.query(`SELECT rows_done::int AS done, batches::int AS batches, status FROM tandem.backfills`).catch(() => undefined);
    return result?.rows[0] as { done: number; batches: number; status: string } | undefined;
  }

  async function killMidway(file: string) {
    const run = spawnCli(['start', file, '--backfill-batch-size', '1000', '--backfill-batch-delay', '10'], { DATABASE_URL: pg.url });
    const atKill = await waitFor(async () => {
      const p = await progress();
      return p && p.done >= 10_000 ? p : undefined;
    }, 60_000, 'the backfill to get going');
    run.child.kill('SIGKILL');
    expect(await run.exit).toBe('SIGKILL');
    const after = (await progress())!;
    expect(after.done).toBeGreaterThanOrEqual(atKill.done);
    expect(after.done).toBeLessThan(rows);
    const state = await pg.query(`SELECT status FROM tandem.migrations`);
    expect(state.rows).toEqual([{ status: 'starting' }]);
    return after;
  }

  async function expectFullyBackfilled() {
    const { rows: check } = await pg.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE w IS DISTINCT FROM upper(v))::int AS wrong FROM big`);
    expect(check[0]).toEqual({ n: rows, wrong: 0 });
    const final = (await progress())!;
    // Every batch committed with its progress, so none was done twice: the counts add up exactly.
    expect(final).toEqual({ done: rows, batches: rows / 1000, status: 'done' });
  }

  it('resumes after kill -9 with tandem backfill, without redoing finished batches', async () => {
    await pg.query(bigTable);
    const file = await migrationFile(addUpper.name, addUpper);
    const atKill = await killMidway(file);
    const resumed = await tandem(pg.url, ['backfill', '--backfill-batch-size', '1000']);
    ok(resumed);
    expect(resumed.stdout).toContain('01_upper: backfill finished');
    await expectFullyBackfilled();
    expect(atKill.done % 1000).toBe(0);
    const status = await pg.query(`SELECT status FROM tandem.migrations`);
    expect(status.rows).toEqual([{ status: 'active' }]);
  });

  it('resumes after kill -9 when the same start runs again', async () => {
    await pg.query(bigTable);
    const file = await migrationFile(addUpper.name, addUpper);
    await killMidway(file);
    const again = await tandem(pg.url, ['start', file, '--backfill-batch-size', '1000']);
    ok(again);
    expect(again.stdout).toContain('01_upper: resumed and started');
    await expectFullyBackfilled();
  });

  it('serves backfill metrics and status over HTTP while it runs, and logs progress', async () => {
    await pg.query(bigTable);
    const port = await freePort();
    const file = await migrationFile(addUpper.name, addUpper);
    const run = spawnCli(['start', file, '--backfill-batch-size', '1000', '--backfill-batch-delay', '10', '--metrics-listen', `127.0.0.1:${port}`], {
      DATABASE_URL: pg.url,
    });
    const metrics = await waitFor(async () => {
      const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
      const rows = /tandem_backfill_rows_total\{table="big"\} (\d+)/.exec(text);
      return rows && Number(rows[1]) > 0 ? text : undefined;
    }, 60_000, 'backfill metrics');
    expect(metrics).toContain('tandem_backfill_batches_total{table="big"}');
    expect(metrics).toMatch(/tandem_backfill_last_progress_timestamp_seconds\{table="big"\} \d/);
    const status = (await fetch(`http://127.0.0.1:${port}/status`).then((r) => r.json())) as { backfills: { table: string; rowsTotal: number }[] };
    expect(status.backfills[0]).toMatchObject({ table: 'big', rowsTotal: rows });
    // The page shows the same run: the migration's steps from the state, the live backfill row.
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await page.text();
    expect(html).toContain('<h2>Migration <code>01_upper</code></h2>');
    expect(html).toMatch(/<tr data-table="big">.*\/120000<\/td>/s);
    expect(await run.exit).toBe(0);
    // Not a terminal: progress goes to the JSON log, with rows, total and rate.
    const progressLines = run.stderr().split('\n').filter((l) => l.includes('"backfill"'));
    expect(progressLines.length).toBeGreaterThan(0);
    expect(JSON.parse(progressLines.at(-1)!).msg).toMatch(/^backfill big █+ 100% 120k\/120k rows · \d+k? rows\/s · done$/);
  });

  it('walks the table by index ranges: no sequential scan of it', async () => {
    await pg.query(bigTable);
    const before = (await pg.query(`SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'big'`)).rows[0].seq_scan;
    ok(await start(pg.url, '01_upper', addUpper.operations, ['--backfill-batch-size', '5000']));
    await pg.query('SELECT pg_stat_force_next_flush()').catch(() => {});
    await new Promise((r) => setTimeout(r, 600));
    const after = (await pg.query(`SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'big'`)).rows[0].seq_scan;
    expect(Number(after) - Number(before)).toBe(0);
  });

  it('skips rows the application holds locked and revisits them', async () => {
    await pg.query(`CREATE TABLE acc (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO acc SELECT g, g FROM generate_series(1, 3000) g;`);
    const holder = await pg.client();
    const run = start(pg.url, '01_cents', [{ add_column: { table: 'acc', up: 'balance * 100', column: { name: 'cents', type: 'bigint' } } }], [
      '--backfill-batch-size',
      '100',
      '--backfill-batch-delay',
      '20',
      '--lock-timeout',
      '100',
    ]);
    // Once the backfill runs (the schema changes are done), the application locks rows ahead of it.
    await waitFor(async () => ((await progress())?.done ?? 0) > 0 || undefined, 30_000, 'the backfill to start');
    await holder.query('BEGIN');
    await holder.query('SELECT * FROM acc WHERE id BETWEEN 2800 AND 2850 FOR UPDATE');
    await waitFor(async () => {
      const r = await pg.query(`SELECT jsonb_array_length(pending) AS n FROM tandem.backfills`).catch(() => ({ rows: [] }));
      return r.rows[0]?.n >= 51 ? true : undefined;
    }, 30_000, 'the locked rows to be skipped');
    await holder.query('COMMIT');
    ok(await run);
    const wrong = await pg.query(`SELECT count(*)::int AS n FROM acc WHERE cents IS DISTINCT FROM balance * 100`);
    expect(wrong.rows[0].n).toBe(0);
  });

  it('reports a backfill stalled on a lock, then finishes when the lock goes', async () => {
    await pg.query(`CREATE TABLE t (id int PRIMARY KEY, a int); INSERT INTO t SELECT g, g FROM generate_series(1, 2000) g;`);
    const holder = await pg.client();
    const file = await migrationFile('01_b', { operations: [{ add_column: { table: 't', up: 'a + 1', column: { name: 'b', type: 'int' } } }] });
    const run = spawnCli(['start', file, '--stall-timeout', '1', '--lock-timeout', '100', '--backfill-batch-size', '200', '--backfill-batch-delay', '50'], {
      DATABASE_URL: pg.url,
    });
    await waitFor(async () => ((await progress())?.done ?? 0) > 0 || undefined, 30_000, 'the backfill to start');
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE t IN SHARE MODE');
    await waitFor(async () => ((await progress())?.status === 'stalled' ? true : undefined), 30_000, 'the stall to be reported');
    const status = await tandem(pg.url, ['status']);
    expect(status.stdout).toMatch(/backfill t: stalled, \d+\/2000 rows .*STALLED: no progress for \d+s/);
    await holder.query('COMMIT');
    expect(await run.exit).toBe(0);
    expect(run.stderr()).toContain('is stalled: no batch committed for 1 s');
    expect((await progress())!.status).toBe('done');
  });

  it('backfills a table keyed by GENERATED ALWAYS AS IDENTITY, and one with only a unique NOT NULL column', async () => {
    await pg.query(`CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, x int);
                    INSERT INTO ident (x) SELECT g FROM generate_series(1, 1500) g;
                    CREATE TABLE keyed (code text NOT NULL UNIQUE, x int); INSERT INTO keyed SELECT 'c' || g, g FROM generate_series(1, 1500) g;`);
    ok(await start(pg.url, '01_both', [
      { add_column: { table: 'ident', up: 'x * 2', column: { name: 'y', type: 'int' } } },
      { add_column: { table: 'keyed', up: 'x * 3', column: { name: 'y', type: 'int' } } },
    ]));
    const methods = await pg.query(`SELECT table_name, method, key_columns FROM tandem.backfills ORDER BY table_name`);
    expect(methods.rows).toEqual([
      { table_name: 'ident', method: 'primary key', key_columns: ['id'] },
      { table_name: 'keyed', method: 'unique index', key_columns: ['code'] },
    ]);
    expect((await pg.query(`SELECT count(*)::int AS n FROM ident WHERE y IS DISTINCT FROM x * 2`)).rows[0].n).toBe(0);
    expect((await pg.query(`SELECT count(*)::int AS n FROM keyed WHERE y IS DISTINCT FROM x * 3`)).rows[0].n).toBe(0);
  });

  it('backfills tables keyed by types that have no max() aggregate: uuid, and a boolean in a composite key', async () => {
    // Found by the umami and ai-chatbot histories (test/convert/histories.test.ts): Prisma and Drizzle key most tables by uuid.
    await pg.query(`CREATE TABLE docs (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), x int);
                    INSERT INTO docs (x) SELECT g FROM generate_series(1, 2500) g;
                    CREATE TABLE flags (on_off boolean, n int, x int, PRIMARY KEY (on_off, n));
                    INSERT INTO flags SELECT g % 2 = 0, g, g FROM generate_series(1, 2500) g;`);
    ok(await start(pg.url, '01_uuid', [
      { add_column: { table: 'docs', up: 'x * 2', column: { name: 'y', type: 'int' } } },
      { add_column: { table: 'flags', up: 'x * 3', column: { name: 'y', type: 'int' } } },
    ], ['--backfill-batch-size', '1000']));
    const done = await pg.query(`SELECT table_name, rows_done::int AS rows, batches::int FROM tandem.backfills ORDER BY table_name`);
    expect(done.rows).toEqual([
      { table_name: 'docs', rows: 2500, batches: 3 },
      { table_name: 'flags', rows: 2500, batches: 3 },
    ]);
    expect((await pg.query(`SELECT count(*)::int AS n FROM docs WHERE y IS DISTINCT FROM x * 2`)).rows[0].n).toBe(0);
    expect((await pg.query(`SELECT count(*)::int AS n FROM flags WHERE y IS DISTINCT FROM x * 3`)).rows[0].n).toBe(0);
  });

  it('walks a table without a key past page ranges that hold no live rows', async () => {
    // A bulk delete leaves whole pages empty in the middle: a batch over them finds nothing, and the
    // walk must go on to the pages after them, not take the empty batch for the end of the table.
    await pg.query(`CREATE TABLE nokey (a int, b text);
                    INSERT INTO nokey SELECT g, 'row ' || g FROM generate_series(1, 20000) g;
                    DELETE FROM nokey WHERE a BETWEEN 2001 AND 15000;
                    ANALYZE nokey;`);
    ok(await start(pg.url, '01_nokey', [{ add_column: { table: 'nokey', up: 'upper(b)', column: { name: 'c', type: 'text' } } }], ['--backfill-batch-size', '500']));
    const done = (await pg.query(`SELECT method, rows_done::int AS rows FROM tandem.backfills`)).rows[0];
    expect(done.method).toBe('ctid');
    // At least every row: a row the walk updated may land on a page it has yet to reach and be touched again.
    expect(done.rows).toBeGreaterThanOrEqual(7000);
    expect((await pg.query(`SELECT count(*)::int AS n FROM nokey WHERE c IS DISTINCT FROM upper(b)`)).rows[0].n).toBe(0);
  });

  it('an empty table needs no backfill', async () => {
    await pg.query(`CREATE TABLE empty (id int PRIMARY KEY, a int)`);
    const result = await start(pg.url, '01_e', [{ add_column: { table: 'empty', up: 'a', column: { name: 'b', type: 'int' } } }]);
    ok(result);
    expect((await progress())).toEqual({ done: 0, batches: 0, status: 'done' });
  });
});
