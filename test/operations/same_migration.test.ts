/**
 * Operations that meet in one migration (issue #17): an index and a constraint on one column, a
 * constraint on a column the migration adds, a constraint or table dropped and created again under
 * the same name, a key dropped after the foreign key that needed it. Each case also rolls back to
 * the exact schema it started from.
 */
import { expect } from 'vitest';
import { runOperationCases } from '../support/cases.js';
import { columnNames, columnsOf, constraintsOf, indexesOf } from '../support/migrations.js';

const setup = `
  CREATE TABLE users (id serial PRIMARY KEY, name text);
  INSERT INTO users (name) SELECT 'u' || g FROM generate_series(1, 20) g;
  CREATE TABLE posts (id serial PRIMARY KEY, author integer CONSTRAINT posts_author_fkey REFERENCES users (id) ON DELETE RESTRICT, title text);
  INSERT INTO posts (author, title) SELECT g, 'p' || g FROM generate_series(1, 20) g;
  CREATE TABLE sessions (id serial PRIMARY KEY, token text NOT NULL, data text);
  CREATE UNIQUE INDEX sessions_token_key ON sessions (token);
  CREATE INDEX sessions_data_idx ON sessions (data);
  INSERT INTO sessions (token, data) SELECT 't' || g, 'old' FROM generate_series(1, 20) g;`;

const postsFk = { table: 'users', columns: ['id'], on_delete: 'CASCADE' };

runOperationCases('operations that meet in one migration', [
  {
    name: 'create_index unique, then a foreign key on the same column',
    setup,
    migrations: [
      {
        name: '01_unique_author',
        operations: [
          { create_index: { name: 'posts_author_key', table: 'posts', unique: true, columns: [{ column: 'author' }] } },
          { drop_constraint: { table: 'posts', name: 'posts_author_fkey', up: 'author', down: 'author' } },
          { create_constraint: { table: 'posts', name: 'posts_author_ref', type: 'foreign_key', columns: ['author'], references: postsFk, up: { author: 'author' }, down: { author: 'author' } } },
        ],
      },
    ],
    afterStart: async (t) => {
      await expect(t.new.query(`INSERT INTO posts (author) VALUES (1)`)).rejects.toThrow(/posts_author_key/);
    },
    afterComplete: async (t) => {
      expect((await indexesOf(t.db, 'public', 'posts')).posts_author_key).toBe('CREATE UNIQUE INDEX posts_author_key ON public.posts USING btree (author)');
      expect(await constraintsOf(t.db, 'public', 'posts')).toEqual({
        posts_author_ref: 'FOREIGN KEY (author) REFERENCES users(id) ON DELETE CASCADE',
        posts_pkey: 'PRIMARY KEY (id)',
      });
    },
  },
  {
    name: 'drop_constraint, then drop_column of the column it covered (trigger.dev history)',
    setup,
    migrations: [
      { name: '01_drop_author', operations: [{ drop_constraint: { table: 'posts', name: 'posts_author_fkey' } }, { drop_column: { table: 'posts', column: 'author' } }] },
    ],
    afterStart: async (t) => {
      // The new version neither sees the column nor is held by its key; the old one keeps both.
      await t.new.query(`INSERT INTO posts (title) VALUES ('new')`);
      await expect(t.old.query(`INSERT INTO posts (author, title) VALUES (999, 'old')`)).rejects.toThrow(/posts_author_fkey/);
      expect(await columnNames(t.db, 'public', 'posts')).toEqual(['id', 'author', 'title']);
    },
    afterComplete: async (t) => {
      expect(await columnNames(t.db, 'public', 'posts')).toEqual(['id', 'title']);
      expect(await constraintsOf(t.db, 'public', 'posts')).toEqual({ posts_pkey: 'PRIMARY KEY (id)' });
    },
  },
  {
    name: 'drop_constraint, then drop_table of the same table',
    setup,
    migrations: [{ name: '01_drop_posts', operations: [{ drop_constraint: { table: 'posts', name: 'posts_author_fkey' } }, { drop_table: { name: 'posts' } }] }],
    afterStart: async (t) => {
      expect((await t.old.query(`SELECT count(*)::int AS n FROM posts`)).rows[0].n).toBe(20);
      expect((await t.db.query(`SELECT to_regclass('public_01_drop_posts.posts') AS view`)).rows[0].view).toBeNull();
      expect(await columnNames(t.db, 'public', 'posts')).toEqual(['id', 'author', 'title']);
    },
    afterComplete: async (t) => {
      expect((await t.db.query(`SELECT to_regclass('public.posts') AS posts`)).rows[0].posts).toBeNull();
    },
  },
  {
    name: 'a foreign key and a unique key on a column added in the same migration',
    setup,
    migrations: [
      {
        name: '01_editor',
        operations: [
          { add_column: { table: 'posts', column: { name: 'editor', type: 'integer', nullable: false }, up: 'author' } },
          { create_constraint: { table: 'posts', name: 'posts_editor_fkey', type: 'foreign_key', columns: ['editor'], references: { table: 'users', columns: ['id'] }, up: { editor: 'editor' }, down: { editor: 'editor' } } },
          { create_constraint: { table: 'posts', name: 'posts_editor_key', type: 'unique', columns: ['editor'], up: { editor: 'editor + 0' } } },
        ],
      },
    ],
    afterStart: async (t) => {
      await expect(t.new.query(`INSERT INTO posts (author, editor) VALUES (1, 4242)`)).rejects.toThrow(/posts_editor_fkey/);
      expect((await t.new.query(`SELECT count(*)::int AS n FROM posts WHERE editor = author`)).rows[0].n).toBe(20);
    },
    afterComplete: async (t) => {
      expect(await constraintsOf(t.db, 'public', 'posts')).toMatchObject({
        posts_editor_fkey: 'FOREIGN KEY (editor) REFERENCES users(id)',
        posts_editor_key: 'UNIQUE (editor)',
      });
    },
  },
  {
    name: 'drop_constraint, then create_constraint of the same name',
    setup,
    migrations: [
      {
        name: '01_cascade',
        operations: [
          { drop_constraint: { table: 'posts', name: 'posts_author_fkey', up: 'author', down: 'author' } },
          { create_constraint: { table: 'posts', name: 'posts_author_fkey', type: 'foreign_key', columns: ['author'], references: postsFk, up: { author: 'author' }, down: { author: 'author' } } },
        ],
      },
    ],
    afterStart: async (t) => {
      expect((await constraintsOf(t.db, 'public', 'posts')).posts_author_fkey).toBe('FOREIGN KEY (author) REFERENCES users(id) ON DELETE RESTRICT');
    },
    afterComplete: async (t) => {
      expect(await constraintsOf(t.db, 'public', 'posts')).toEqual({
        posts_author_fkey: 'FOREIGN KEY (author) REFERENCES users(id) ON DELETE CASCADE',
        posts_pkey: 'PRIMARY KEY (id)',
      });
    },
  },
  {
    name: 'drop a foreign key, then the primary key it referenced',
    setup,
    migrations: [
      {
        name: '01_no_user_key',
        operations: [
          { drop_constraint: { table: 'posts', name: 'posts_author_fkey', up: 'author', down: 'author' } },
          { drop_constraint: { table: 'users', name: 'users_pkey', up: 'id', down: 'id' } },
        ],
      },
    ],
    afterComplete: async (t) => {
      expect(await constraintsOf(t.db, 'public', 'users')).toEqual({});
      expect(await constraintsOf(t.db, 'public', 'posts')).toEqual({ posts_pkey: 'PRIMARY KEY (id)' });
      expect((await t.db.query(`SELECT pg_get_serial_sequence('users', 'id') AS seq`)).rows[0].seq).toBe('public.users_id_seq');
    },
  },
  {
    name: 'drop_table, then create_table of the same name, with an index of the old name',
    setup,
    migrations: [
      {
        name: '01_new_sessions',
        operations: [
          { drop_table: { name: 'sessions' } },
          {
            create_table: {
              name: 'sessions',
              columns: [
                { name: 'id', type: 'serial', pk: true },
                { name: 'token', type: 'text', unique: true },
                { name: 'owner', type: 'integer', references: { name: 'sessions_owner_fkey', table: 'users', column: 'id' } },
                { name: 'data', type: 'text', nullable: true },
              ],
            },
          },
          { create_index: { name: 'sessions_data_idx', table: 'sessions', columns: [{ column: 'data' }, { column: 'owner' }] } },
        ],
      },
    ],
    afterStart: async (t) => {
      expect((await t.old.query(`SELECT count(*)::int AS n FROM sessions`)).rows[0].n).toBe(20);
      await t.new.query(`INSERT INTO sessions (token, owner) VALUES ('new', 1)`);
      expect((await t.new.query(`SELECT token FROM sessions`)).rows).toEqual([{ token: 'new' }]);
    },
    afterComplete: async (t) => {
      expect(await columnNames(t.db, 'public', 'sessions')).toEqual(['id', 'token', 'owner', 'data']);
      expect(Object.keys(await constraintsOf(t.db, 'public', 'sessions'))).toEqual(['sessions_owner_fkey', 'sessions_pkey', 'sessions_token_key']);
      expect((await indexesOf(t.db, 'public', 'sessions')).sessions_data_idx).toBe('CREATE INDEX sessions_data_idx ON public.sessions USING btree (data, owner)');
      expect((await t.db.query(`SELECT pg_get_serial_sequence('sessions', 'id') AS seq, (SELECT count(*)::int FROM sessions) AS n`)).rows[0]).toEqual({ seq: 'public.sessions_id_seq', n: 1 });
    },
  },
  {
    name: 'alter_column without up, then with up, on a serial key: the sequence stays with the column',
    setup,
    migrations: [
      {
        name: '01_text_ids',
        operations: [
          { alter_column: { table: 'sessions', column: 'id', default: null } },
          { alter_column: { table: 'sessions', column: 'id', type: 'text', up: 'CAST(id AS text)', down: 'CAST(id AS integer)' } },
        ],
      },
    ],
    afterStart: async (t) => {
      expect((await t.new.query(`SELECT id FROM sessions WHERE token = 't1'`)).rows[0].id).toBe('1');
    },
    afterComplete: async (t) => {
      expect((await t.db.query(`SELECT pg_get_serial_sequence('sessions', 'id') AS seq, (SELECT count(*)::int FROM sessions WHERE id = substr(token, 2)) AS n`)).rows[0]).toEqual({
        seq: 'public.sessions_id_seq',
        n: 20,
      });
    },
  },
  {
    name: 'drop_index, then a type change of its column: the index is not rebuilt on the shadow',
    setup,
    migrations: [
      {
        name: '01_data_varchar',
        operations: [
          { drop_index: { name: 'sessions_data_idx' } },
          { alter_column: { table: 'sessions', column: 'data', type: 'varchar(100)', up: 'data', down: 'data' } },
        ],
      },
    ],
    afterComplete: async (t) => {
      expect(Object.keys(await indexesOf(t.db, 'public', 'sessions'))).toEqual(['sessions_pkey', 'sessions_token_key']);
    },
  },
  {
    // pgroll refuses a second backfilling operation on a column; here each one's `up` applies to what the one before made of it.
    name: 'two backfilling operations on the same column: a type change, then NOT NULL, over many batches',
    setup: `CREATE TABLE readings (id int PRIMARY KEY, value int);
      INSERT INTO readings SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE g END FROM generate_series(1, 3000) g;`,
    migrations: [
      {
        name: '01_value_bigint_required',
        operations: [
          { alter_column: { table: 'readings', column: 'value', type: 'bigint', up: 'value * 10', down: '(value / 10)::int' } },
          { alter_column: { table: 'readings', column: 'value', nullable: false, up: 'coalesce(value, -1)', down: 'nullif(value, -1)' } },
        ],
      },
    ],
    flags: ['--backfill-batch-size', '250'],
    afterStart: async (t) => {
      const wrong = await t.new.query(
        `SELECT count(*)::int AS n FROM readings WHERE value IS DISTINCT FROM CASE WHEN id % 10 = 0 THEN -1 ELSE id * 10 END`,
      );
      expect(wrong.rows[0].n).toBe(0);
      expect((await t.old.query(`SELECT count(*)::int AS n FROM readings WHERE value IS DISTINCT FROM CASE WHEN id % 10 = 0 THEN NULL ELSE id END`)).rows[0].n).toBe(0);
      // Writes from either side go through both expressions.
      await t.old.query(`INSERT INTO readings VALUES (5001, 7), (5002, NULL)`);
      expect((await t.new.query(`SELECT id, value FROM readings WHERE id > 5000 ORDER BY id`)).rows).toEqual([
        { id: 5001, value: '70' },
        { id: 5002, value: '-1' },
      ]);
      await t.new.query(`INSERT INTO readings VALUES (5003, 90), (5004, -1)`);
      expect((await t.old.query(`SELECT id, value FROM readings WHERE id > 5002 ORDER BY id`)).rows).toEqual([
        { id: 5003, value: 9 },
        { id: 5004, value: null },
      ]);
      await expect(t.new.query(`INSERT INTO readings VALUES (5005, NULL)`)).rejects.toThrow(/_tandem_nn_|null value/);
    },
    afterComplete: async (t) => {
      expect((await columnsOf(t.db, 'public', 'readings')).find((c) => c.name === 'value')).toMatchObject({ type: 'bigint', nullable: false });
      expect((await t.db.query(`SELECT count(*)::int AS n FROM readings WHERE value IS NULL`)).rows[0].n).toBe(0);
    },
  },
]);
