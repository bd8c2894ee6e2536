import { expect } from 'vitest';
import { columnsOf, constraintsOf, indexesOf, triggersOf } from '../support/migrations.js';
import { runOperationCases, type CaseContext } from '../support/cases.js';

const usersSetup = `
  CREATE TABLE users (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text, name text NOT NULL DEFAULT 'anon', age int CHECK (age >= 0));
  CREATE INDEX users_email_lower ON users (lower(email));
  CREATE INDEX users_name ON users (name) WHERE email IS NOT NULL;
  CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users (id) ON DELETE CASCADE);
  INSERT INTO users (email, name, age) SELECT CASE WHEN g % 10 = 0 THEN NULL ELSE 'user' || g || '@example.com' END, 'user' || g, g % 90 FROM generate_series(1, 3000) g;
  INSERT INTO orders SELECT g, g FROM generate_series(1, 100) g;`;

/** Old and new columns agree on every row (the final check of every two-way sync case). */
async function agree(t: CaseContext, oldSql: string, newSql: string) {
  const old = (await t.old.query(`SELECT id::bigint AS id, ${oldSql} AS v FROM users ORDER BY id`)).rows;
  const fresh = (await t.new.query(`SELECT id::bigint AS id, ${newSql} AS v FROM users ORDER BY id`)).rows;
  expect(fresh).toEqual(old);
}

runOperationCases('alter_column', [
  {
    name: 'the seed scenario: rename email, make it NOT NULL with a check, both versions writing',
    setup: usersSetup,
    migrations: [
      {
        name: '02_email_address',
        operations: [
          { rename_column: { table: 'users', from: 'email', to: 'email_address' } },
          {
            alter_column: {
              table: 'users',
              column: 'email_address',
              nullable: false,
              check: { name: 'email_has_at', constraint: "email_address LIKE '%@%'" },
              up: "CASE WHEN email IS NULL OR email NOT LIKE '%@%' THEN 'unknown-' || id || '@invalid' ELSE email END",
              down: 'email_address',
            },
          },
        ],
      },
    ],
    flags: ['--backfill-batch-size', '500'],
    afterStart: async (t) => {
      expect((await columnsOf(t.new, t.newSchema, 'users')).map((c) => c.name)).toEqual(['id', 'email_address', 'name', 'age']);
      expect((await columnsOf(t.old, 'public', 'users')).map((c) => c.name)).toContain('email');
      // Backfilled: every existing row has a valid address in the new column.
      expect((await t.new.query(`SELECT count(*)::int AS n FROM users WHERE email_address IS NULL`)).rows[0].n).toBe(0);
      expect((await t.new.query(`SELECT email_address FROM users WHERE id = 10`)).rows[0].email_address).toBe('unknown-10@invalid');
      // The old version still writes NULLs and old-style values; the new version sees them converted.
      const { rows } = await t.old.query(`INSERT INTO users (email, name) VALUES (NULL, 'legacy') RETURNING id`);
      expect((await t.new.query(`SELECT email_address FROM users WHERE id = $1`, [rows[0].id])).rows[0].email_address).toBe(`unknown-${rows[0].id}@invalid`);
      await t.old.query(`UPDATE users SET email = 'fixed@example.com' WHERE id = $1`, [rows[0].id]);
      expect((await t.new.query(`SELECT email_address FROM users WHERE id = $1`, [rows[0].id])).rows[0].email_address).toBe('fixed@example.com');
      // The new version writes its column; the old version reads it back through down.
      const fresh = await t.new.query(`INSERT INTO users (email_address, name) VALUES ('new@example.com', 'modern') RETURNING id`);
      expect((await t.old.query(`SELECT email FROM users WHERE id = $1`, [fresh.rows[0].id])).rows[0].email).toBe('new@example.com');
      await t.new.query(`UPDATE users SET email_address = 'renamed@example.com' WHERE id = 1`);
      expect((await t.old.query(`SELECT email FROM users WHERE id = 1`)).rows[0].email).toBe('renamed@example.com');
      // The new version's rules hold for its writes already.
      await expect(t.new.query(`INSERT INTO users (email_address, name) VALUES (NULL, 'x')`)).rejects.toThrow(/_tandem_nn_/);
      await expect(t.new.query(`INSERT INTO users (email_address, name) VALUES ('no-at-sign', 'x')`)).rejects.toThrow(/email_has_at/);
      // A direct write to the base table (neither version's search_path) counts as the old version.
      await t.db.query(`UPDATE users SET email = 'direct@example.com' WHERE id = 2`);
      expect((await t.new.query(`SELECT email_address FROM users WHERE id = 2`)).rows[0].email_address).toBe('direct@example.com');
      // Upserts through the new version's view.
      await t.new.query(`INSERT INTO users (id, email_address, name) OVERRIDING SYSTEM VALUE VALUES (3, 'up@example.com', 'u') ON CONFLICT (id) DO UPDATE SET email_address = EXCLUDED.email_address`);
      expect((await t.old.query(`SELECT email FROM users WHERE id = 3`)).rows[0].email).toBe('up@example.com');
      await agree(t, `CASE WHEN email IS NULL OR email NOT LIKE '%@%' THEN 'unknown-' || id || '@invalid' ELSE email END`, 'email_address');
      // Indexes on the old column were rebuilt on the shadow, under temporary names.
      expect(Object.keys(await indexesOf(t.db, 'public', 'users')).some((n) => n.startsWith('_tandem_ix_users_email_lower'))).toBe(true);
    },
    afterComplete: async (t) => {
      const columns = await columnsOf(t.db, 'public', 'users');
      expect(columns.map((c) => c.name)).toEqual(['id', 'name', 'age', 'email_address']);
      expect(columns.find((c) => c.name === 'email_address')).toMatchObject({ nullable: false, type: 'text' });
      expect(await constraintsOf(t.db, 'public', 'users')).toEqual({
        email_has_at: "CHECK ((email_address ~~ '%@%'::text))",
        users_age_check: 'CHECK ((age >= 0))',
        users_pkey: 'PRIMARY KEY (id)',
      });
      const indexes = await indexesOf(t.db, 'public', 'users');
      expect(indexes.users_email_lower).toBe('CREATE INDEX users_email_lower ON public.users USING btree (lower(email_address))');
      expect(indexes.users_name).toBe('CREATE INDEX users_name ON public.users USING btree (name) WHERE (email_address IS NOT NULL)');
      expect(await triggersOf(t.db, 'public', 'users')).toEqual([]);
      // No temporary name is left behind (PostgreSQL 18 also names NOT NULL constraints).
      const leftovers = await t.db.query(`SELECT conname FROM pg_constraint WHERE conrelid = 'users'::regclass AND conname LIKE '%tandem%'`);
      expect(leftovers.rows).toEqual([]);
      await t.new.query(`INSERT INTO users (email_address, name) VALUES ('after@example.com', 'later')`);
      await expect(t.new.query(`INSERT INTO users (email_address, name) VALUES ('nope', 'later')`)).rejects.toThrow(/email_has_at/);
    },
  },
  {
    name: 'int to bigint on an identity primary key that another table references',
    setup: usersSetup,
    migrations: [{ name: '02_bigint_ids', operations: [{ alter_column: { table: 'users', column: 'id', type: 'bigint', up: 'id', down: 'id' } }] }],
    afterStart: async (t) => {
      const old = await t.old.query(`INSERT INTO users (email, name) VALUES ('o@x', 'o') RETURNING id`);
      const fresh = await t.new.query(`INSERT INTO users (email, name) VALUES ('n@x', 'n') RETURNING id`);
      expect(Number(fresh.rows[0].id)).toBeGreaterThan(old.rows[0].id);
      expect((await t.old.query(`SELECT count(*)::int AS n FROM users WHERE id = $1`, [Number(fresh.rows[0].id)])).rows[0].n).toBe(1);
      await t.new.query(`INSERT INTO orders VALUES (1000, $1)`, [fresh.rows[0].id]);
      await agree(t, 'id::bigint', 'id');
    },
    afterComplete: async (t) => {
      const id = (await columnsOf(t.db, 'public', 'users')).find((c) => c.name === 'id');
      expect(id).toMatchObject({ name: 'id', type: 'bigint', nullable: false });
      expect((await t.db.query(`SELECT attidentity FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'id'`)).rows[0].attidentity).toBe('a');
      expect(await constraintsOf(t.db, 'public', 'orders')).toMatchObject({ orders_user_id_fkey: 'FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE' });
      const max = (await t.db.query(`SELECT max(id) AS m FROM users`)).rows[0].m;
      const next = await t.new.query(`INSERT INTO users (email, name) VALUES ('later@x', 'l') RETURNING id`);
      expect(BigInt(next.rows[0].id)).toBeGreaterThan(BigInt(max));
      await t.db.query(`DELETE FROM users WHERE id = 1`);
      expect((await t.db.query(`SELECT count(*)::int AS n FROM orders WHERE user_id = 1`)).rows[0].n).toBe(0);
    },
  },
  {
    name: 'text to integer with up and down, default and comment',
    setup: `CREATE TABLE items (id int PRIMARY KEY, qty text DEFAULT '1'); INSERT INTO items SELECT g, (g * 2)::text FROM generate_series(1, 1200) g;`,
    migrations: [
      {
        name: '01_qty_int',
        operations: [
          {
            alter_column: {
              table: 'items',
              column: 'qty',
              type: 'integer',
              default: '0',
              comment: 'how many',
              up: "CASE WHEN qty ~ '^[0-9]+$' THEN qty::integer ELSE 0 END",
              down: 'qty::text',
            },
          },
        ],
      },
    ],
    afterStart: async (t) => {
      expect((await t.new.query(`SELECT qty FROM items WHERE id = 7`)).rows[0].qty).toBe(14);
      await t.old.query(`INSERT INTO items (id, qty) VALUES (5000, 'lots')`);
      expect((await t.new.query(`SELECT qty FROM items WHERE id = 5000`)).rows[0].qty).toBe(0);
      await t.new.query(`INSERT INTO items (id) VALUES (5001)`);
      expect((await t.old.query(`SELECT qty FROM items WHERE id = 5001`)).rows[0].qty).toBe('0');
      await t.old.query(`INSERT INTO items (id) VALUES (5002)`);
      expect((await t.new.query(`SELECT qty FROM items WHERE id = 5002`)).rows[0].qty).toBe(1);
    },
    afterComplete: async (t) => {
      expect((await columnsOf(t.db, 'public', 'items')).find((c) => c.name === 'qty')).toMatchObject({ type: 'integer', default: '0', nullable: true });
      expect((await t.db.query(`SELECT col_description('items'::regclass, 3) AS c`)).rows[0].c).toBe('how many');
    },
  },
  {
    name: 'unique and foreign key on an existing column',
    setup: `CREATE TABLE teams (id int PRIMARY KEY); INSERT INTO teams SELECT generate_series(1, 10);
            CREATE TABLE players (id int PRIMARY KEY, team int, badge text); INSERT INTO players SELECT g, g % 10 + 1, 'b' || g FROM generate_series(1, 500) g;`,
    migrations: [
      {
        name: '01_constraints',
        operations: [
          { alter_column: { table: 'players', column: 'team', references: { name: 'players_team_fk', table: 'teams', column: 'id', on_delete: 'CASCADE' }, up: 'team', down: 'team' } },
          { alter_column: { table: 'players', column: 'badge', unique: { name: 'players_badge_key' }, up: 'badge', down: 'badge' } },
        ],
      },
    ],
    afterStart: async (t) => {
      await expect(t.new.query(`INSERT INTO players VALUES (1000, 99, 'x')`)).rejects.toThrow(/players_team_fk/);
      await expect(t.new.query(`INSERT INTO players VALUES (1000, 1, 'b1')`)).rejects.toThrow(/duplicate key/);
      await t.old.query(`INSERT INTO players VALUES (1001, 2, 'b1001')`);
    },
    afterComplete: async (t) => {
      expect(await constraintsOf(t.db, 'public', 'players')).toEqual({
        players_badge_key: 'UNIQUE (badge)',
        players_pkey: 'PRIMARY KEY (id)',
        players_team_fk: 'FOREIGN KEY (team) REFERENCES teams(id) ON DELETE CASCADE',
      });
    },
  },
  {
    name: 'several operations on one column, and NULLs allowed again with down',
    setup: `CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL, score int); INSERT INTO notes SELECT g, 'note ' || g, g FROM generate_series(1, 200) g;`,
    migrations: [
      {
        name: '01_notes',
        operations: [
          { alter_column: { table: 'notes', column: 'body', nullable: true, up: 'body', down: "coalesce(body, '(empty)')" } },
          { alter_column: { table: 'notes', column: 'score', type: 'numeric(10,2)', up: 'score / 2.0', down: 'round(score * 2)::int' } },
          { alter_column: { table: 'notes', column: 'score', check: { name: 'score_small', constraint: 'score < 1000' }, up: 'least(score, 999)', down: 'score' } },
        ],
      },
    ],
    afterStart: async (t) => {
      expect((await t.new.query(`SELECT score FROM notes WHERE id = 3`)).rows[0].score).toBe('1.50');
      await t.new.query(`INSERT INTO notes (id, body, score) VALUES (900, NULL, 12.5)`);
      expect((await t.old.query(`SELECT body, score FROM notes WHERE id = 900`)).rows[0]).toEqual({ body: '(empty)', score: 25 });
      await t.old.query(`INSERT INTO notes (id, body, score) VALUES (901, 'x', 5000)`);
      expect((await t.new.query(`SELECT score FROM notes WHERE id = 901`)).rows[0].score).toBe('999.00');
    },
    afterComplete: async (t) => {
      const columns = await columnsOf(t.db, 'public', 'notes');
      expect(columns.find((c) => c.name === 'body')).toMatchObject({ nullable: true });
      expect(columns.find((c) => c.name === 'score')).toMatchObject({ type: 'numeric(10,2)' });
      expect((await constraintsOf(t.db, 'public', 'notes')).score_small).toBe('CHECK ((score < (1000)::numeric))');
    },
  },
  {
    name: 'a table without primary key or unique column is backfilled by ctid ranges',
    setup: `CREATE TABLE events (kind text, payload text); INSERT INTO events SELECT 'k' || (g % 7), 'p' || g FROM generate_series(1, 5000) g; ANALYZE events;`,
    migrations: [{ name: '01_kind', operations: [{ alter_column: { table: 'events', column: 'kind', type: 'varchar(20)', nullable: false, up: "coalesce(kind, 'none')", down: 'kind' } }] }],
    flags: ['--backfill-batch-size', '300'],
    afterStart: async (t) => {
      expect((await t.new.query(`SELECT count(*)::int AS n FROM events WHERE kind IS NULL`)).rows[0].n).toBe(0);
      const progress = await t.db.query(`SELECT method, rows_done::int AS done, status FROM tandem.backfills`);
      // Updated rows can move to a later page and be visited again (harmless: the trigger is idempotent).
      expect(progress.rows).toEqual([{ method: 'ctid', done: expect.any(Number) as number, status: 'done' }]);
      expect(progress.rows[0].done).toBeGreaterThanOrEqual(5000);
    },
    afterComplete: async (t) => {
      expect((await columnsOf(t.db, 'public', 'events')).find((c) => c.name === 'kind')).toMatchObject({ name: 'kind', type: 'character varying(20)', nullable: false });
    },
  },
  {
    name: 'a composite primary key drives the backfill',
    setup: `CREATE TABLE memberships (org int, member int, role text, PRIMARY KEY (org, member)); INSERT INTO memberships SELECT g % 13, g, 'r' FROM generate_series(1, 2000) g;`,
    migrations: [{ name: '01_role', operations: [{ alter_column: { table: 'memberships', column: 'role', default: "'member'", nullable: false, up: "coalesce(role, 'member')", down: 'role' } }] }],
    flags: ['--backfill-batch-size', '150'],
    afterStart: async (t) => {
      const progress = await t.db.query(`SELECT method, key_columns, rows_done::int AS done FROM tandem.backfills`);
      expect(progress.rows).toEqual([{ method: 'primary key', key_columns: ['org', 'member'], done: 2000 }]);
      await t.new.query(`INSERT INTO memberships (org, member) VALUES (99, 1)`);
      expect((await t.old.query(`SELECT role FROM memberships WHERE org = 99`)).rows[0].role).toBe('member');
    },
  },
  {
    name: 'changing only a comment needs no shadow',
    setup: `CREATE TABLE t (id int PRIMARY KEY, c text); COMMENT ON COLUMN t.c IS 'before';`,
    migrations: [{ name: '01_comment', operations: [{ alter_column: { table: 't', column: 'c', comment: 'after' } }] }],
    afterStart: async (t) => {
      expect((await t.db.query(`SELECT col_description('t'::regclass, 2) AS c`)).rows[0].c).toBe('after');
      expect(await triggersOf(t.db, 'public', 't')).toEqual([]);
    },
    afterRollback: async (t) => {
      expect((await t.db.query(`SELECT col_description('t'::regclass, 2) AS c`)).rows[0].c).toBe('before');
    },
  },
]);
