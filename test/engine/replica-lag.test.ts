/**
 * --max-replica-lag against a real streaming replica on loopback: a primary and a replica made by
 * pg_basebackup from it. A replica must run the primary's major, and pg_basebackup is not among the
 * embedded binaries, so both servers here are Debian's PostgreSQL 15 (the harness's server is not
 * used); without those binaries the test is skipped and says why.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedPostgres, type PostgresBinaries } from '../../src/dev/embedded.js';
import { startOnFreePort } from '../support/postgres.js';
import { migrationFile, ok, tandem } from '../support/migrations.js';
import { spawnCli, waitFor } from '../support/spawn.js';

const run = promisify(execFile);
const BIN = '/usr/lib/postgresql/15/bin';
const missing = ['postgres', 'initdb', 'pg_basebackup'].filter((name) => !existsSync(join(BIN, name)));
if (missing.length) console.log(`replica-lag tests skipped: ${missing.join(', ')} not found in ${BIN} (Debian's postgresql-15)`);
const debian15: PostgresBinaries = { initdb: join(BIN, 'initdb'), postgres: join(BIN, 'postgres'), source: BIN };

describe.skipIf(missing.length > 0)('backfill against a streaming replica (--max-replica-lag)', () => {
  const rows = 3000;
  let dir = '';
  let primary: EmbeddedPostgres | undefined;
  let replica: EmbeddedPostgres | undefined;
  const clients: pg.Client[] = [];

  async function client(server: EmbeddedPostgres): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: server.url() });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-replica-'));
    await chmod(dir, 0o755);
    const settings = { wal_level: 'replica', max_wal_senders: '4', max_connections: '50', fsync: 'off', full_page_writes: 'off' };
    primary = await startOnFreePort((port) => new EmbeddedPostgres({ dataDir: join(dir, 'primary'), port, binaries: debian15, settings }));
    // pg_basebackup writes the copy as the user the servers run as (postgres, when the tests run as root).
    const replicaDir = join(dir, 'replica');
    await mkdir(replicaDir, { mode: 0o700 });
    const asRoot = userInfo().uid === 0;
    if (asRoot) {
      const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
      const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
      await chown(replicaDir, uid, gid);
    }
    const basebackup = [join(BIN, 'pg_basebackup'), '-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', replicaDir, '-c', 'fast', '-R', '-X', 'stream'];
    await (asRoot ? run('runuser', ['-u', 'postgres', '--', ...basebackup]) : run(basebackup[0]!, basebackup.slice(1)));
    replica = await startOnFreePort((port) => new EmbeddedPostgres({ dataDir: replicaDir, port, binaries: debian15, settings: { ...settings, hot_standby: 'on' } }), { initialize: false });
  }, 180_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await replica?.stop().catch(() => {});
    await primary?.stop().catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  async function progress(db: pg.Client) {
    const { rows: found } = await db
      .query(`SELECT rows_done::int AS done, batches::int AS batches, status, throttle_reason AS reason, throttle_detail AS detail,
                     extract(epoch FROM now() - throttled_since)::float8 AS seconds
                FROM tandem.backfills ORDER BY started_at DESC LIMIT 1`)
      .catch(() => ({ rows: [] }));
    return found[0] as { done: number; batches: number; status: string; reason: string | null; detail: string | null; seconds: number | null } | undefined;
  }

  /** The replica has replayed everything the primary wrote up to now. */
  async function caughtUp(onPrimary: pg.Client, onReplica: pg.Client) {
    const { rows: at } = await onPrimary.query(`SELECT pg_current_wal_lsn()::text AS lsn`);
    await waitFor(async () => {
      const { rows: r } = await onReplica.query(`SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok`, [at[0].lsn]);
      return r[0].ok ? true : undefined;
    }, 60_000, 'the replica to catch up');
  }

  it('pauses batches while the replica is behind, goes on when it catches up, and the result is exact on both', async () => {
    const onPrimary = await client(primary!);
    const onReplica = await client(replica!);
    await onPrimary.query(`CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL);
      INSERT INTO big SELECT g, 'value ' || g FROM generate_series(1, ${rows}) g; ANALYZE big;`);
    await caughtUp(onPrimary, onReplica);
    await onReplica.query('SELECT pg_wal_replay_pause()');

    const file = await migrationFile('01_upper', { operations: [{ add_column: { table: 'big', up: 'upper(v)', column: { name: 'w', type: 'text' } } }] });
    const started = spawnCli(['start', file, '--max-replica-lag', '500ms', '--backfill-batch-size', '50', '--backfill-batch-delay', '20'], {
      DATABASE_URL: primary!.url(),
    });
    const held = await waitFor(async () => {
      const p = await progress(onPrimary);
      return p?.status === 'throttled' ? p : undefined;
    }, 60_000, 'the backfill to be throttled');
    expect(held.reason).toBe('replica_lag');
    expect(held.detail).toMatch(/^walreceiver@127\.0\.0\.1 is \d+\.\d s behind \(limit 0\.5 s\)$/);
    expect(held.done).toBeLessThan(rows);
    // Throttled means no batch at all while the replica stays paused.
    const later = await waitFor(async () => {
      const p = (await progress(onPrimary))!;
      return (p.seconds ?? 0) >= 1.5 ? p : undefined;
    }, 30_000, 'the throttle to last');
    expect({ done: later.done, batches: later.batches, status: later.status }).toEqual({ done: held.done, batches: held.batches, status: 'throttled' });
    const status = await tandem(primary!.url(), ['status']);
    expect(status.stdout).toMatch(/backfill big: throttled, .*THROTTLED \(replica_lag\) for \d+s: walreceiver@127\.0\.0\.1 is .* behind .*, replica lag \d+\.\ds/);

    await onReplica.query('SELECT pg_wal_replay_resume()');
    expect(await started.exit).toBe(0);
    expect(started.stderr()).toContain('backfill of big throttled (replica_lag)');
    const final = (await progress(onPrimary))!;
    expect(final).toMatchObject({ done: rows, status: 'done' });
    await caughtUp(onPrimary, onReplica);
    for (const db of [onPrimary, onReplica]) {
      const { rows: check } = await db.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE w IS DISTINCT FROM upper(v))::int AS wrong FROM big`);
      expect(check[0]).toEqual({ n: rows, wrong: 0 });
    }
    ok(await tandem(primary!.url(), ['complete']));
  });

  it('a replica that stops streaming is reported and holds the batches until it is back', async () => {
    const onPrimary = await client(primary!);
    await onPrimary.query(`CREATE TABLE gone (id bigint PRIMARY KEY, v text NOT NULL);
      INSERT INTO gone SELECT g, 'value ' || g FROM generate_series(1, ${rows}) g; ANALYZE gone;`);
    const file = await migrationFile('02_lower', { operations: [{ add_column: { table: 'gone', up: 'lower(v)', column: { name: 'w', type: 'text' } } }] });
    // Held by an operator first, so the replica is seen streaming before it goes, however long its shutdown takes.
    ok(await tandem(primary!.url(), ['backfill', '--pause']));
    const started = spawnCli(['start', file, '--max-replica-lag', '5s', '--backfill-batch-size', '50'], { DATABASE_URL: primary!.url() });
    await waitFor(async () => ((await progress(onPrimary))?.reason === 'manual' ? true : undefined), 60_000, 'the backfill to be paused');
    await replica!.stop();
    ok(await tandem(primary!.url(), ['backfill', '--resume']));
    const held = await waitFor(async () => {
      const p = await progress(onPrimary);
      return p?.reason === 'replica_lag' ? p : undefined;
    }, 60_000, 'the backfill to be throttled for the replica');
    expect(held).toMatchObject({ reason: 'replica_lag', detail: 'walreceiver@127.0.0.1 is gone or unreachable (limit 5 s)' });
    expect(started.stderr()).toContain('replica walreceiver@127.0.0.1 no longer streams from the primary');
    await replica!.start();
    expect(await started.exit).toBe(0);
    expect(started.stderr()).toContain('replica walreceiver@127.0.0.1 is streaming again');
    const { rows: check } = await onPrimary.query(`SELECT count(*) FILTER (WHERE w IS DISTINCT FROM lower(v))::int AS wrong FROM gone`);
    expect(check[0].wrong).toBe(0);
  }, 150_000);
});
