/**
 * A PostgreSQL restart in the middle of a backfill (issue 11): tandem reconnects and goes on when the
 * server comes back in time; otherwise it says exactly where the migration stands and what continues
 * it, and it never claims to have rolled back what it did not.
 */
import { describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, tandem } from '../support/migrations.js';
import { spawnCli, waitFor } from '../support/spawn.js';

describe('a lost connection during a backfill', () => {
  const pg = usePostgres();
  const rows = 60_000;
  const migration = { name: '01_upper', operations: [{ add_column: { table: 'big', up: 'upper(v)', column: { name: 'w', type: 'text' } } }] };

  async function setup(): Promise<string> {
    await pg.query(`CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL);
      INSERT INTO big SELECT g, 'value ' || g FROM generate_series(1, ${rows}) g; ANALYZE big`);
    return migrationFile(migration.name, migration);
  }

  /** Starts the migration in its own process and waits until its backfill has committed a few batches. */
  async function startSlowly(file: string, extra: string[] = []) {
    const run = spawnCli(['start', file, '--backfill-batch-size', '500', '--backfill-batch-delay', '20', ...extra], { DATABASE_URL: pg.url });
    await waitFor(async () => {
      const result = await pg.query(`SELECT rows_done FROM tandem.backfills`).catch(() => undefined);
      return result?.rows[0] && Number(result.rows[0].rows_done) >= 2000 ? true : undefined;
    }, 60_000, 'the backfill to get going');
    return run;
  }

  async function expectBackfilled() {
    const { rows: check } = await pg.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE w IS DISTINCT FROM upper(v))::int AS wrong FROM big`);
    expect(check[0]).toEqual({ n: rows, wrong: 0 });
  }

  it('reconnects after a restart and finishes, logging each step of it', async () => {
    const file = await setup();
    const run = await startSlowly(file);
    await pg.server.pause();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await pg.server.resume();
    expect(await run.exit, run.stderr()).toBe(0);
    const log = run.stdout() + run.stderr();
    expect(log).toContain('lost the connection to PostgreSQL during start of 01_upper; reconnecting for up to 60 s');
    expect(log).toContain('reconnected to PostgreSQL; start of 01_upper goes on from its last recorded step');
    expect(log).not.toContain('rolling back');
    await expectBackfilled();
    const state = await pg.query(`SELECT m.status, b.status AS backfill FROM tandem.migrations m JOIN tandem.backfills b ON b.migration_id = m.id`);
    expect(state.rows).toEqual([{ status: 'active', backfill: 'done' }]);
  });

  it('when the server stays away, says where the migration stands and what continues it; status agrees; tandem backfill finishes', async () => {
    const file = await setup();
    const run = await startSlowly(file, ['--reconnect-timeout', '1']);
    await pg.server.pause();
    const exit = await run.exit;
    await pg.server.resume();
    expect(exit).toBe(1);
    const log = run.stdout() + run.stderr();
    expect(log).toMatch(/lost the connection to PostgreSQL during start of "01_upper" at step \d+ of \d+ \("backfill big"\) and could not reconnect within 1 s/);
    expect(log).toMatch(/nothing was rolled back: "01_upper" stays "starting"/);
    expect(log).toContain(`run tandem start ${file} again (or tandem backfill) to go on, or tandem rollback to undo it`);
    expect(log).not.toContain('rolling back');

    const status = await tandem(pg.url, ['status']);
    expect(status.stdout).toContain('active migration: 01_upper — starting');
    expect(status.stdout).toContain(`INTERRUPTED: no tandem process is running it; resume its start (tandem start ${file}, or tandem backfill) or roll it back (tandem rollback)`);
    expect(status.stdout).toMatch(/backfill big: interrupted, \d+\/\d+ rows/);

    ok(await tandem(pg.url, ['backfill']));
    await expectBackfilled();
  });

  it('a rolled-back migration leaves no backfill reading as running', async () => {
    const file = await setup();
    const run = await startSlowly(file);
    run.child.kill('SIGKILL');
    await run.exit;
    // The killed process's server session lets go of the lock once it notices the client is gone.
    await waitFor(async () => ((await tandem(pg.url, ['rollback'])).code === 0 ? true : undefined), 60_000, 'rollback to get the lock');
    const { rows: left } = await pg.query(`SELECT m.status, b.status AS backfill, b.finished_at IS NOT NULL AS ended FROM tandem.migrations m JOIN tandem.backfills b ON b.migration_id = m.id`);
    expect(left).toEqual([{ status: 'rolled_back', backfill: 'rolled_back', ended: true }]);
  });
});
