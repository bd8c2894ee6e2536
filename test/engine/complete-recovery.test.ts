/**
 * A complete that stops anywhere, because a step failed or the process died, reaches a consistent end:
 * before anything was dropped the migration is still active and rolls back to the schema it started
 * from; after that, `tandem complete` again finishes it. The fault is injected deterministically: a
 * trigger on tandem's own state makes the transaction that records step k fail, which is what a kill
 * or a failing statement at that step looks like to the steps after it.
 */
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, tandem } from '../support/migrations.js';
import { snapshot } from '../support/cases.js';

const setup = `
  CREATE TABLE teams (id serial PRIMARY KEY, name text);
  INSERT INTO teams (name) SELECT 't' || g FROM generate_series(1, 5) g;
  CREATE TABLE users (id serial PRIMARY KEY, email text, nickname text, team integer CONSTRAINT users_team_fkey REFERENCES teams (id), age int);
  CREATE INDEX users_nickname_idx ON users (nickname);
  CREATE INDEX users_email_idx ON users (email);
  INSERT INTO users (email, nickname, team, age) SELECT 'u' || g || '@x', 'n' || g, g % 5 + 1, g FROM generate_series(1, 50) g;
  CREATE TABLE legacy (id int PRIMARY KEY, owner int CONSTRAINT legacy_owner_fkey REFERENCES users (id));
  INSERT INTO legacy SELECT g, g FROM generate_series(1, 10) g;`;

const migration = {
  operations: [
    { rename_column: { table: 'users', from: 'email', to: 'email_address' } },
    { alter_column: { table: 'users', column: 'age', type: 'bigint', nullable: false, up: 'coalesce(age, 0)', down: 'age' } },
    { add_column: { table: 'users', column: { name: 'score', type: 'int', nullable: false, check: { name: 'score_positive', constraint: 'score >= 0' } }, up: 'id' } },
    { drop_column: { table: 'users', column: 'nickname' } },
    { drop_index: { name: 'users_email_idx' } },
    { create_index: { name: 'users_score_idx', table: 'users', columns: [{ column: 'score' }] } },
    { drop_constraint: { table: 'users', name: 'users_team_fkey', up: 'team', down: 'team' } },
    { create_constraint: { table: 'users', name: 'users_team_fkey', type: 'foreign_key', columns: ['team'], references: { table: 'teams', columns: ['id'], on_delete: 'CASCADE' }, up: { team: 'team' }, down: { team: 'team' } } },
    { drop_constraint: { table: 'legacy', name: 'legacy_owner_fkey' } },
    { drop_table: { name: 'legacy' } },
  ],
};

describe('complete interrupted at any step', () => {
  const fixture = usePostgres();

  async function fresh(): Promise<{ url: string; db: pg.Client }> {
    const url = await fixture.server.createDatabase();
    const db = new pg.Client({ connectionString: url });
    db.on('error', () => {});
    await db.connect();
    await db.query(setup);
    ok(await tandem(url, ['init']));
    return { url, db };
  }

  async function status(db: pg.Client): Promise<{ status: string; step: number }> {
    return (await db.query(`SELECT status, step FROM tandem.migrations ORDER BY id DESC LIMIT 1`)).rows[0];
  }

  it('rolls back before the first drop, and finishes with complete again after it', async () => {
    // The schema a complete that never stops leaves behind.
    const reference = await fresh();
    const before = await snapshot(reference.db);
    const file = await migrationFile('02_many', migration);
    ok(await tandem(reference.url, ['start', file, '--complete']));
    const after = await snapshot(reference.db);
    const { rows } = await reference.db.query(`SELECT plan FROM tandem.migrations`);
    const steps: { description: string; destructive?: boolean }[] = rows[0].plan.complete;
    const firstDestructive = steps.findIndex((s) => s.destructive);
    expect(steps.map((s) => s.description)).toContain('rehearse the rest of complete (rolled back)');
    await reference.db.end();

    const outcomes = { rolledBack: 0, completedAgain: 0 };
    for (let k = 1; k <= steps.length; k++) {
      const { url, db } = await fresh();
      try {
        ok(await tandem(url, ['start', file]));
        // Recording step k fails: step k (1-based) is undone if it ran in a transaction, else it ran.
        await db.query(`CREATE FUNCTION public.fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                          IF NEW.status = 'completing' AND NEW.step = ${k} THEN RAISE EXCEPTION 'injected fault at step ${k}'; END IF;
                          RETURN NEW; END $$;
                        CREATE TRIGGER fault BEFORE UPDATE ON tandem.migrations FOR EACH ROW EXECUTE FUNCTION public.fault();`);
        const failed = await tandem(url, ['complete']);
        expect(failed.code, `complete with a fault at step ${k}`).toBe(1);
        expect(failed.stderr).toContain(`injected fault at step ${k}`);
        await db.query(`DROP TRIGGER fault ON tandem.migrations; DROP FUNCTION public.fault()`);
        const state = await status(db);
        if (k - 1 <= firstDestructive && state.status === 'active') {
          ok(await tandem(url, ['rollback']));
          expect(await snapshot(db), `rollback after a fault at step ${k}`).toEqual(before);
          outcomes.rolledBack++;
        } else {
          expect(state.status, `a fault at step ${k} ("${steps[k - 1]!.description}")`).toBe('completing');
          const refused = await tandem(url, ['rollback']);
          expect(refused.code).toBe(1);
          expect(refused.stderr).toContain('run tandem complete again');
          ok(await tandem(url, ['complete']));
          expect(await snapshot(db), `complete again after a fault at step ${k}`).toEqual(after);
          outcomes.completedAgain++;
        }
      } finally {
        await db.end();
      }
    }
    expect(outcomes.rolledBack).toBe(firstDestructive + 1);
    expect(outcomes.completedAgain).toBe(steps.length - firstDestructive - 1);
    // One fresh database and two CLI runs per step: on a busy machine that passes the default minute.
  }, 240_000);

  it('a step that cannot succeed fails in the rehearsal, while rollback still works', async () => {
    const { url, db } = await fresh();
    try {
      const before = await snapshot(db);
      // legacy.owner references users.id: a text id cannot keep that key.
      ok(await tandem(url, ['start', await migrationFile('02_text_ids', { operations: [{ alter_column: { table: 'users', column: 'id', type: 'text', up: 'CAST(id AS text)', down: 'CAST(id AS integer)' } }] })]));
      const failed = await tandem(url, ['complete']);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toMatch(/\("rehearse the rest of complete \(rolled back\)"\): database error 42804: foreign key constraint "legacy_owner_fkey" cannot be implemented/);
      expect(failed.stderr).toContain('nothing was dropped: "02_text_ids" is still active');
      ok(await tandem(url, ['rollback']));
      expect(await snapshot(db)).toEqual(before);
    } finally {
      await db.end();
    }
  });

  it('an object the migration created and complete lost fails the check after complete, naming it', async () => {
    const { url, db } = await fresh();
    try {
      ok(await tandem(url, ['start', await migrationFile('02_index', { operations: [{ create_index: { name: 'users_age_idx', table: 'users', columns: [{ column: 'age' }] } }] })]));
      await db.query(`DROP INDEX users_age_idx`);
      const failed = await tandem(url, ['complete']);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toContain(
        'operation 0 (create_index): complete of "02_index" ran every step, but an object it created is missing: index "users_age_idx" of table "users" (created by operation 0 (create_index)): no index of that name exists',
      );
      expect(await status(db)).toMatchObject({ status: 'completing' });
      // Checked again, with the same list, by a complete that resumes.
      expect((await tandem(url, ['complete'])).stderr).toContain('index "users_age_idx" of table "users"');
      await db.query(`CREATE INDEX users_age_idx ON users (age)`);
      ok(await tandem(url, ['complete']));
      expect(await status(db)).toMatchObject({ status: 'complete' });
    } finally {
      await db.end();
    }
  });
});
