import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, tandem, upperBackfill } from '../support/migrations.js';
import { spawnCli, waitFor } from '../support/spawn.js';
import { freePort } from '../support/postgres.js';

// Each case runs the CLI several times (a process start each): on a loaded 2-core machine that takes minutes.
describe('backfill throttling', { timeout: 180_000 }, () => {
  const pg = usePostgres();
  const rows = 20_000;
  const { setup: table, migration: addUpper } = upperBackfill(rows);

  interface Row {
    done: number;
    batches: number;
    status: string;
    reason: string | null;
    detail: string | null;
    seconds: number | null;
  }

  async function progress(): Promise<Row | undefined> {
    const result = await pg
      .query(
        `SELECT rows_done::int AS done, batches::int AS batches, status, throttle_reason AS reason, throttle_detail AS detail,
                extract(epoch FROM now() - throttled_since)::float8 AS seconds
           FROM tandem.backfills`,
      )
      .catch(() => undefined);
    return result?.rows[0] as Row | undefined;
  }

  function throttledFor(reason: string) {
    return waitFor(async () => {
      const p = await progress();
      return p?.status === 'throttled' && p.reason === reason ? p : undefined;
    }, 60_000, `the backfill to be throttled (${reason})`);
  }

  /** Held back means no batch at all: the count does not move while the backfill says it is throttled. */
  async function expectHeldBack(at: Row) {
    const later = await waitFor(async () => {
      const p = (await progress())!;
      return p.status === 'throttled' && (p.seconds ?? 0) >= 1.5 ? p : undefined;
    }, 30_000, 'the throttle to last');
    expect({ done: later.done, batches: later.batches }).toEqual({ done: at.done, batches: at.batches });
  }

  async function expectExact() {
    const { rows: check } = await pg.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE w IS DISTINCT FROM upper(v))::int AS wrong FROM big`);
    expect(check[0]).toEqual({ n: rows, wrong: 0 });
    const final = (await progress())!;
    expect(final).toMatchObject({ done: rows, status: 'done', reason: null });
  }

  function startBackfill(file: string, extra: string[]) {
    return spawnCli(['start', file, '--backfill-batch-size', '500', ...extra], { DATABASE_URL: pg.url });
  }

  it('tandem backfill --pause holds the running backfill before its next batch, everywhere says why, --resume lets it go on', async () => {
    await pg.query(table);
    const port = await freePort();
    const file = await migrationFile(addUpper.name, addUpper);
    const run = startBackfill(file, ['--backfill-batch-delay', '20', '--metrics-listen', `127.0.0.1:${port}`]);
    await waitFor(async () => ((await progress())?.done ?? 0) > 0 || undefined, 60_000, 'the backfill to start');
    const paused = ok(await tandem(pg.url, ['backfill', '--pause']));
    expect(paused.stdout).toContain('backfills of schema "public" paused');
    const at = await throttledFor('manual');
    expect(at.done).toBeLessThan(rows);
    expect(at.detail).toMatch(/^paused by .+ pid \d+ at .+\(tandem backfill --resume goes on\)$/);
    await expectHeldBack(at);

    const status = await tandem(pg.url, ['status']);
    expect(status.stdout).toMatch(/backfill big: throttled, \d+\/20000 rows .*THROTTLED \(manual\) for \d+s: paused by /);
    const json = JSON.parse((await tandem(pg.url, ['status', '--json'])).stdout);
    expect(json.active.backfills[0]).toMatchObject({ status: 'throttled', throttle: { reason: 'manual' }, secondsSinceProgress: null });
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
    expect(metrics).toContain('tandem_backfill_throttled{table="big",reason="manual"} 1');
    expect(metrics).toMatch(/tandem_backfill_throttled_seconds_total\{table="big",reason="manual"\} [1-9]/);
    const live = (await fetch(`http://127.0.0.1:${port}/status`).then((r) => r.json())) as { backfills: { throttle: { reason: string } | null }[] };
    expect(live.backfills[0]!.throttle).toMatchObject({ reason: 'manual' });

    expect(ok(await tandem(pg.url, ['backfill', '--resume'])).stdout).toContain('backfills of schema "public" go on');
    expect(await run.exit).toBe(0);
    await expectExact();
    expect(run.stderr()).toContain('backfill of big throttled (manual)');
    expect(run.stderr()).toMatch(/backfill of big goes on after \d+ s throttled \(manual\)/);
    const after = JSON.parse((await tandem(pg.url, ['status', '--json'])).stdout);
    expect(after.history[0].name).toBe('01_upper');
    const again = await tandem(pg.url, ['backfill', '--resume']);
    expect(again.stdout).toContain('were not paused');
  });

  it('holds batches while the throttle file exists', async () => {
    await pg.query(table);
    const dir = await mkdtemp(join(tmpdir(), 'tandem-throttle-'));
    const flag = join(dir, 'hold');
    await writeFile(flag, '');
    const file = await migrationFile(addUpper.name, addUpper);
    const run = startBackfill(file, ['--throttle-file', flag]);
    const at = await throttledFor('manual');
    expect(at).toMatchObject({ done: 0, detail: `the throttle file ${flag} exists` });
    await expectHeldBack(at);
    await rm(dir, { recursive: true });
    expect(await run.exit).toBe(0);
    await expectExact();
  });

  it('holds batches while sessions wait on locks of the table (--max-lock-waiters)', async () => {
    await pg.query(table);
    const holder = await pg.client();
    const waiter = await pg.client();
    const file = await migrationFile(addUpper.name, addUpper);
    const run = startBackfill(file, ['--max-lock-waiters', '0', '--backfill-batch-delay', '20']);
    // Once the column is there (its DDL would wait for the row lock too), an application transaction
    // holds a row the backfill has not reached and another queues behind it.
    await waitFor(async () => ((await progress())?.done ?? 0) > 0 || undefined, 60_000, 'the backfill to start');
    await holder.query('BEGIN');
    await holder.query(`SELECT * FROM big WHERE id = ${rows} FOR UPDATE`);
    const waiting = waiter.query(`UPDATE big SET v = v WHERE id = ${rows}`);
    const at = await throttledFor('lock_waiters');
    expect(at.detail).toBe('1 sessions wait on locks of "public"."big" (limit 0)');
    await expectHeldBack(at);
    await holder.query('COMMIT');
    await waiting;
    expect(await run.exit).toBe(0);
    await expectExact();
  });

  it('holds batches while more sessions than the limit are active (--max-active-backends)', async () => {
    await pg.query(table);
    const busy = await pg.client();
    const sleeping = busy.query('SELECT pg_sleep(600)').catch(() => undefined);
    const file = await migrationFile(addUpper.name, addUpper);
    const run = startBackfill(file, ['--max-active-backends', '0']);
    const at = await throttledFor('load');
    expect(at.detail).toMatch(/^\d+ active sessions \(limit 0\)$/);
    await expectHeldBack(at);
    await pg.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'`);
    await sleeping;
    expect(await run.exit).toBe(0);
    await expectExact();
  });

  it('a replica that cannot be asked holds the batches: unknown is not caught up', async () => {
    await pg.query(table);
    const file = await migrationFile(addUpper.name, addUpper);
    // The primary itself is no replica: tandem cannot read a replay position there.
    const run = startBackfill(file, ['--max-replica-lag', '1s', '--replica-url', pg.url]);
    const at = await throttledFor('replica_lag');
    expect(at.detail).toContain('is gone or unreachable (limit 1 s)');
    run.child.kill('SIGTERM');
    await run.exit;
    expect(run.stderr()).toContain('it is not a replica');
  });

  it('--replica-url needs --max-replica-lag', async () => {
    const result = await tandem(pg.url, ['backfill', '--replica-url', pg.url]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--replica-url needs --max-replica-lag');
  });

  it('--max-replica-lag without replicas does not hold anything back', async () => {
    await pg.query(table);
    const file = await migrationFile(addUpper.name, addUpper);
    const run = startBackfill(file, ['--max-replica-lag', '1s']);
    expect(await run.exit).toBe(0);
    await expectExact();
  });

  it('sizes batches to take --backfill-batch-time, between a floor and --backfill-batch-size', async () => {
    await pg.query(table);
    const file = await migrationFile(addUpper.name, addUpper);
    const run = spawnCli(['start', file, '--backfill-batch-size', '4000', '--backfill-batch-time', '40ms'], { DATABASE_URL: pg.url, TANDEM_LOG_LEVEL: 'info' });
    expect(await run.exit).toBe(0);
    await expectExact();
    const sizes = run
      .stderr()
      .split('\n')
      .filter((line) => line.includes('"backfill"'))
      .map((line) => JSON.parse(line).backfill.adaptiveBatchSize as number | null);
    expect(sizes.length).toBeGreaterThan(0);
    for (const size of sizes) {
      expect(size).toBeGreaterThanOrEqual(10);
      expect(size).toBeLessThanOrEqual(4000);
    }
    // Sized batches start small: more of them than the fixed ceiling would need.
    expect((await progress())!.batches).toBeGreaterThan(rows / 4000);
  });
});
