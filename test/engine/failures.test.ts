import { describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, start, tandem } from '../support/migrations.js';
import { snapshot } from '../support/cases.js';

describe('failures leave the database as it was', () => {
  const pg = usePostgres();
  const setup = `CREATE TABLE users (id int PRIMARY KEY, email text, team int);
                 INSERT INTO users SELECT g, 'same@example.com', 1 FROM generate_series(1, 100) g;`;

  it('a step that fails mid-start rolls back everything start did', async () => {
    await pg.query(setup);
    ok(await tandem(pg.url, ['init']));
    const db = await pg.client();
    const before = await snapshot(db);
    const result = await start(pg.url, '01_unique_email', [
      { rename_column: { table: 'users', from: 'team', to: 'team_id' } },
      { add_column: { table: 'users', column: { name: 'nickname', type: 'text', nullable: true }, up: "'n' || id" } },
      { create_index: { name: 'users_email_unique', table: 'users', unique: true, columns: [{ column: 'email' }] } },
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/operation 2 \(create_index\): start of "01_unique_email" failed at step \d+ of \d+ \("create index users_email_unique concurrently"\): database error 23505: could not create unique index/);
    expect(result.stderr).toContain('everything start did was rolled back');
    expect(await snapshot(db)).toEqual(before);
    const history = await db.query(`SELECT name, status, error IS NOT NULL AS has_error FROM tandem.migrations`);
    expect(history.rows).toEqual([{ name: '01_unique_email', status: 'rolled_back', has_error: true }]);
    // The same migration, fixed, can be started afterwards.
    ok(await start(pg.url, '01_unique_email', [{ rename_column: { table: 'users', from: 'team', to: 'team_id' } }]));
  });

  it('a backfill that violates a constraint fails the start and rolls it back', async () => {
    await pg.query(setup);
    ok(await tandem(pg.url, ['init']));
    const db = await pg.client();
    const before = await snapshot(db);
    const result = await start(pg.url, '01_score', [
      { add_column: { table: 'users', up: '-id', column: { name: 'score', type: 'int', check: { name: 'score_positive', constraint: 'score >= 0' } } } },
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/\("backfill users"\): .*violates check constraint "score_positive"/);
    expect(await snapshot(db)).toEqual(before);
  });

  it('a lock held by another session: retries, then fails naming the holder, database unchanged', async () => {
    await pg.query(setup);
    ok(await tandem(pg.url, ['init']));
    const holder = await pg.client();
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM users');
    const holderPid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const db = await pg.client();
    const before = await snapshot(db);
    const result = await start(pg.url, '01_add', [{ add_column: { table: 'users', column: { name: 'age', type: 'int', nullable: true } } }], [
      '--lock-timeout',
      '50',
      '--lock-retries',
      '3',
    ]);
    await holder.query('ROLLBACK');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('"add column users.age" could not get a lock on public.users within lock_timeout 50 ms, 3 times');
    expect(result.stderr).toContain(`held by pid ${holderPid} (AccessShareLock, idle in transaction`);
    expect(await snapshot(db)).toEqual(before);
  });

  it('a lock released while start retries: start goes on and succeeds', async () => {
    await pg.query(setup);
    const holder = await pg.client();
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM users');
    const pending = start(pg.url, '01_add', [{ add_column: { table: 'users', column: { name: 'age', type: 'int', nullable: true } } }], ['--lock-timeout', '50']);
    // Let it fail at least once, then let go.
    const db = await pg.client();
    for (let i = 0; i < 200; i++) {
      const waiting = await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tandem' AND wait_event_type = 'Lock'`);
      if (waiting.rows[0].n > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await holder.query('ROLLBACK');
    const result = await pending;
    ok(result);
  });

  it('two starts racing: exactly one wins, the other is told why', async () => {
    await pg.query(setup);
    ok(await tandem(pg.url, ['init']));
    const holder = await pg.client();
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM users');
    const first = start(pg.url, '01_a', [{ add_column: { table: 'users', column: { name: 'a', type: 'int', nullable: true } } }], ['--lock-timeout', '50']);
    const db = await pg.client();
    for (let i = 0; i < 200; i++) {
      const { rows } = await db.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted`);
      if (rows[0].n > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const second = await start(pg.url, '01_b', [{ add_column: { table: 'users', column: { name: 'b', type: 'int', nullable: true } } }]);
    await holder.query('ROLLBACK');
    ok(await first);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/another tandem process is migrating schema "public" right now \(server pid \d+, tandem from 127\.0\.0\.1:\d+, (idle|active)/);
    const { rows } = await db.query(`SELECT name, status FROM tandem.migrations ORDER BY id`);
    expect(rows).toEqual([{ name: '01_a', status: 'active' }]);
  });

  it('complete that fails validating leaves the migration active and rollback-able', async () => {
    await pg.query(`CREATE TABLE teams (id int PRIMARY KEY); INSERT INTO teams VALUES (1); ${setup}`);
    ok(
      await start(pg.url, '01_team_fk', [
        { add_column: { table: 'users', column: { name: 'team_ref', type: 'int', nullable: true, references: { name: 'users_team_fk', table: 'teams', column: 'id' } } } },
      ]),
    );
    // A row that breaks the NOT VALID foreign key, written with its triggers off (as a bulk load might).
    await pg.query(`ALTER TABLE users DISABLE TRIGGER ALL; UPDATE users SET team_ref = 99 WHERE id = 1; ALTER TABLE users ENABLE TRIGGER ALL`);
    const result = await tandem(pg.url, ['complete']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/complete of "01_team_fk" failed at step 1 of \d+ \("validate constraint users_team_fk"\).*violates foreign key constraint/s);
    expect(result.stderr).toContain('nothing was dropped: "01_team_fk" is still active');
    const status = await tandem(pg.url, ['status', '--json']);
    expect((JSON.parse(status.stdout) as { active: unknown }).active).toMatchObject({ name: '01_team_fk', status: 'active' });
    ok(await tandem(pg.url, ['rollback']));
    const columns = await pg.query(`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'team_ref'`);
    expect(columns.rows[0].n).toBe(0);
  });

  it('an unreadable migration file is refused before connecting', async () => {
    const result = await tandem('postgres://nobody@127.0.0.1:1/none', ['start', '/nonexistent/01_x.yaml']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('/nonexistent/01_x.yaml: no such file');
  });

  it('usage errors exit 2', async () => {
    expect((await tandem(pg.url, ['start'])).code).toBe(2);
    expect((await tandem(pg.url, ['frobnicate'])).code).toBe(2);
    expect((await tandem(pg.url, ['start', await migrationFile('01_x', { operations: [] }), '--bogus'])).code).toBe(2);
  });
});
