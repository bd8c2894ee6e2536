import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { usePostgres } from '../support/harness.js';
import { ok, start } from '../support/migrations.js';

/** Apps rarely own their tables: a role with only table privileges must work through its version. */
describe('privileges', () => {
  const db = usePostgres();

  it('the version schema grants what the tables grant, and the trigger works for an unprivileged writer', async () => {
    await db.server.admin(`DO $$ BEGIN CREATE ROLE app_user LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await db.query(`CREATE TABLE users (id int PRIMARY KEY, email text, secret text);
                    GRANT USAGE ON SCHEMA public TO app_user;
                    GRANT SELECT, INSERT, UPDATE ON users TO app_user;
                    INSERT INTO users VALUES (1, 'a@x', 's')`);
    ok(await start(db.url, '01_rename', [
      { rename_column: { table: 'users', from: 'email', to: 'email_address' } },
      { alter_column: { table: 'users', column: 'email_address', nullable: false, up: "coalesce(email, 'none')", down: 'email_address' } },
    ]));
    const url = new URL(db.url);
    url.username = 'app_user';
    const app = new pg.Client({ connectionString: url.toString(), options: '-c search_path=public_01_rename,public' });
    await app.connect();
    try {
      await app.query(`INSERT INTO users (id, email_address) VALUES (2, 'b@x')`);
      await app.query(`UPDATE users SET email_address = 'c@x' WHERE id = 1`);
      expect((await app.query('SELECT id, email_address FROM users ORDER BY id')).rows).toEqual([
        { id: 1, email_address: 'c@x' },
        { id: 2, email_address: 'b@x' },
      ]);
      await expect(app.query('DELETE FROM users')).rejects.toThrow(/permission denied/);
    } finally {
      await app.end();
    }
    const old = await db.query('SELECT email FROM users ORDER BY id');
    expect(old.rows).toEqual([{ email: 'c@x' }, { email: 'b@x' }]);
    // From PostgreSQL 15 the views check the querying role's own privileges and row security.
    const view = await db.query(`SELECT reloptions, current_setting('server_version_num')::int >= 150000 AS modern FROM pg_class WHERE oid = 'public_01_rename.users'::regclass`);
    expect(view.rows[0].reloptions).toEqual(view.rows[0].modern ? ['security_invoker=true'] : null);
  });
});
