import { expect } from 'vitest';
import { columnsOf, constraintsOf, triggersOf } from '../support/migrations.js';
import { runOperationCases } from '../support/cases.js';

const users = {
  name: '01_users',
  operations: [
    {
      create_table: {
        name: 'users',
        columns: [
          { name: 'id', type: 'bigint', pk: true, generated: { identity: {} } },
          { name: 'name', type: 'text' },
        ],
      },
    },
  ],
};

runOperationCases('add_column', [
  {
    name: 'nullable column with a constant default: catalog-only, no backfill',
    migrations: [users, { name: '02_add_nickname', operations: [{ add_column: { table: 'users', column: { name: 'nickname', type: 'text', nullable: true, default: "'none'" } } }] }],
    afterStart: async (t) => {
      await t.old.query(`INSERT INTO users (name) VALUES ('ann')`);
      expect((await t.new.query(`SELECT name, nickname FROM users`)).rows).toEqual([{ name: 'ann', nickname: 'none' }]);
      expect(await columnsOf(t.old, t.oldSchema!, 'users')).toHaveLength(2);
      expect(await triggersOf(t.db, 'public', 'users')).toEqual([]);
    },
    afterComplete: async (t) => {
      expect((await columnsOf(t.db, 'public', 'users')).find((c) => c.name === 'nickname')).toMatchObject({ nullable: true, default: "'none'::text" });
    },
  },
  {
    name: 'NOT NULL column filled by up: NOT VALID check, backfill, validate, SET NOT NULL',
    migrations: [
      users,
      { name: '02_seed', operations: [{ sql: { up: `INSERT INTO users (name) SELECT 'user' || g FROM generate_series(1, 2500) g` } }] },
      { name: '03_add_slug', operations: [{ add_column: { table: 'users', up: "lower(name) || '-slug'", column: { name: 'slug', type: 'text', unique: true, comment: 'url part' } } }] },
    ],
    flags: ['--backfill-batch-size', '700'],
    afterStart: async (t) => {
      // Existing rows were backfilled.
      const missing = await t.new.query(`SELECT count(*)::int AS n FROM users WHERE slug IS DISTINCT FROM lower(name) || '-slug'`);
      expect(missing.rows[0].n).toBe(0);
      // The old version writes without knowing the column: up fills it.
      await t.old.query(`INSERT INTO users (name) VALUES ('Bob')`);
      expect((await t.new.query(`SELECT slug FROM users WHERE name = 'Bob'`)).rows).toEqual([{ slug: 'bob-slug' }]);
      await t.old.query(`UPDATE users SET name = 'Robert' WHERE name = 'Bob'`);
      expect((await t.new.query(`SELECT slug FROM users WHERE name = 'Robert'`)).rows).toEqual([{ slug: 'robert-slug' }]);
      // The new version must give it: NOT NULL holds for its writes already.
      await expect(t.new.query(`INSERT INTO users (name) VALUES ('nobody')`)).rejects.toThrow(/_tandem_nn_/);
      await t.new.query(`INSERT INTO users (name, slug) VALUES ('Cy', 'cy-custom')`);
      expect((await t.new.query(`SELECT slug FROM users WHERE name = 'Cy'`)).rows).toEqual([{ slug: 'cy-custom' }]);
      // Uniqueness is enforced by the concurrently built index.
      await expect(t.new.query(`INSERT INTO users (name, slug) VALUES ('Cy2', 'cy-custom')`)).rejects.toThrow(/duplicate key/);
      expect(Object.values(await constraintsOf(t.db, 'public', 'users')).join()).toContain('NOT VALID');
    },
    afterComplete: async (t) => {
      const slug = (await columnsOf(t.db, 'public', 'users')).find((c) => c.name === 'slug');
      expect(slug).toMatchObject({ nullable: false });
      expect(await constraintsOf(t.db, 'public', 'users')).toEqual({ users_pkey: 'PRIMARY KEY (id)', users_slug_key: 'UNIQUE (slug)' });
      expect(await triggersOf(t.db, 'public', 'users')).toEqual([]);
      await t.new.query(`INSERT INTO users (name, slug) VALUES ('Dee', 'dee')`);
    },
  },
  {
    name: 'volatile default fills existing rows once each, without a table rewrite',
    migrations: [
      users,
      { name: '02_seed', operations: [{ sql: { up: `INSERT INTO users (name) SELECT 'user' || g FROM generate_series(1, 300) g` } }] },
      { name: '03_add_token', operations: [{ add_column: { table: 'users', column: { name: 'token', type: 'uuid', default: 'gen_random_uuid()' } } }] },
    ],
    afterStart: async (t) => {
      const { rows } = await t.new.query(`SELECT count(*)::int AS n, count(DISTINCT token)::int AS distinct_tokens, count(token)::int AS filled FROM users`);
      expect(rows[0]).toEqual({ n: 300, distinct_tokens: 300, filled: 300 });
      const before = (await t.new.query(`SELECT token FROM users WHERE id = 1`)).rows[0].token;
      await t.old.query(`UPDATE users SET name = 'changed' WHERE id = 1`);
      expect((await t.new.query(`SELECT token FROM users WHERE id = 1`)).rows[0].token).toBe(before);
      await t.old.query(`INSERT INTO users (name) VALUES ('new')`);
      expect((await t.new.query(`SELECT token FROM users WHERE name = 'new'`)).rows[0].token).toMatch(/^[0-9a-f-]{36}$/);
    },
    afterComplete: async (t) => {
      expect((await columnsOf(t.db, 'public', 'users')).find((c) => c.name === 'token')).toMatchObject({ nullable: false, default: 'gen_random_uuid()' });
    },
  },
  {
    name: 'check and foreign key added NOT VALID, validated at complete',
    migrations: [
      users,
      { name: '02_teams', operations: [{ create_table: { name: 'teams', columns: [{ name: 'id', type: 'int', pk: true }] } }, { sql: { up: 'SELECT 1', onComplete: true } }] },
      {
        name: '03_add_team',
        operations: [
          {
            add_column: {
              table: 'users',
              column: {
                name: 'team_id',
                type: 'int',
                nullable: true,
                check: { name: 'team_positive', constraint: 'team_id > 0' },
                references: { name: 'users_team_fk', table: 'teams', column: 'id', on_delete: 'SET NULL' },
              },
            },
          },
        ],
      },
    ],
    afterStart: async (t) => {
      expect(await constraintsOf(t.db, 'public', 'users')).toMatchObject({
        team_positive: 'CHECK ((team_id > 0)) NOT VALID',
        users_team_fk: 'FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE SET NULL NOT VALID',
      });
      await expect(t.new.query(`INSERT INTO users (name, team_id) VALUES ('x', 5)`)).rejects.toThrow(/users_team_fk/);
      await expect(t.new.query(`INSERT INTO users (name, team_id) VALUES ('x', -1)`)).rejects.toThrow(/team_positive/);
    },
    afterComplete: async (t) => {
      expect(await constraintsOf(t.db, 'public', 'users')).toMatchObject({
        team_positive: 'CHECK ((team_id > 0))',
        users_team_fk: 'FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE SET NULL',
      });
    },
  },
  {
    name: 'a table created earlier in the same migration gets the column directly',
    migrations: [
      {
        name: '01_create_and_add',
        operations: [
          { create_table: { name: 'tags', columns: [{ name: 'id', type: 'int', pk: true }] } },
          { add_column: { table: 'tags', column: { name: 'label', type: 'text', unique: true } } },
        ],
      },
    ],
    afterStart: async (t) => {
      expect((await columnsOf(t.db, 'public', 'tags')).map((c) => [c.name, c.nullable])).toEqual([
        ['id', false],
        ['label', false],
      ]);
      expect(await triggersOf(t.db, 'public', 'tags')).toEqual([]);
    },
  },
]);
