import { expect } from 'vitest';
import { columnNames, columnsOf, triggersOf } from '../support/migrations.js';
import { runOperationCases } from '../support/cases.js';

const users = {
  name: '01_users',
  operations: [
    {
      create_table: {
        name: 'users',
        columns: [
          { name: 'id', type: 'int', pk: true },
          { name: 'email', type: 'text' },
          { name: 'legacy_code', type: 'text', nullable: true },
          { name: 'score', type: 'int', default: '0' },
        ],
      },
    },
    { sql: { up: 'SELECT 1', onComplete: true } },
  ],
};

runOperationCases('rename_column, drop_column, rename_table, drop_table', [
  {
    name: 'rename_column: new name in the new version at once, physical rename at complete',
    migrations: [users, { name: '02_rename_email', operations: [{ rename_column: { table: 'users', from: 'email', to: 'email_address' } }] }],
    afterStart: async (t) => {
      expect(await columnNames(t.new, t.newSchema, 'users')).toEqual(['id', 'email_address', 'legacy_code', 'score']);
      expect(await columnNames(t.old, t.oldSchema!, 'users')).toEqual(['id', 'email', 'legacy_code', 'score']);
      expect(await columnNames(t.db, 'public', 'users')).toContain('email');
      await t.old.query(`INSERT INTO users (id, email) VALUES (1, 'old@example.com')`);
      await t.new.query(`INSERT INTO users (id, email_address) VALUES (2, 'new@example.com')`);
      await t.new.query(`UPDATE users SET email_address = 'changed@example.com' WHERE id = 1`);
      expect((await t.old.query(`SELECT id, email FROM users ORDER BY id`)).rows).toEqual([
        { id: 1, email: 'changed@example.com' },
        { id: 2, email: 'new@example.com' },
      ]);
      // Upserts through the version views work: they are plain auto-updatable views.
      await t.new.query(`INSERT INTO users (id, email_address) VALUES (2, 'x') ON CONFLICT (id) DO UPDATE SET email_address = 'upserted'`);
      expect((await t.new.query(`SELECT email_address FROM users WHERE id = 2`)).rows[0].email_address).toBe('upserted');
    },
    afterComplete: async (t) => {
      expect(await columnNames(t.db, 'public', 'users')).toEqual(['id', 'email_address', 'legacy_code', 'score']);
      expect((await t.new.query(`SELECT email_address FROM users ORDER BY id`)).rows.length).toBe(2);
    },
  },
  {
    name: 'drop_column: hidden at start, down fills it for old readers, dropped at complete',
    migrations: [
      users,
      { name: '02_drop_legacy', operations: [{ drop_column: { table: 'users', column: 'legacy_code', down: "'L-' || id" } }] },
    ],
    afterStart: async (t) => {
      expect(await columnNames(t.new, t.newSchema, 'users')).toEqual(['id', 'email', 'score']);
      await t.new.query(`INSERT INTO users (id, email) VALUES (7, 'a@b')`);
      expect((await t.old.query(`SELECT legacy_code FROM users WHERE id = 7`)).rows[0].legacy_code).toBe('L-7');
      // The old version's own writes are kept as they are.
      await t.old.query(`INSERT INTO users (id, email, legacy_code) VALUES (8, 'c@d', 'mine')`);
      expect((await t.old.query(`SELECT legacy_code FROM users WHERE id = 8`)).rows[0].legacy_code).toBe('mine');
      await t.old.query(`UPDATE users SET legacy_code = 'changed' WHERE id = 8`);
      expect((await t.old.query(`SELECT legacy_code FROM users WHERE id = 8`)).rows[0].legacy_code).toBe('changed');
    },
    afterComplete: async (t) => {
      expect(await columnNames(t.db, 'public', 'users')).toEqual(['id', 'email', 'score']);
      expect(await triggersOf(t.db, 'public', 'users')).toEqual([]);
    },
  },
  {
    name: 'rename_table: both names work while both versions run',
    migrations: [users, { name: '02_rename_users', operations: [{ rename_table: { from: 'users', to: 'customers' } }] }],
    afterStart: async (t) => {
      await t.old.query(`INSERT INTO users (id, email) VALUES (1, 'a@b')`);
      expect((await t.new.query(`SELECT id, email FROM customers`)).rows).toEqual([{ id: 1, email: 'a@b' }]);
      await expect(t.new.query(`SELECT 1 FROM ${t.newSchema}.users`)).rejects.toThrow(/does not exist/);
    },
    afterComplete: async (t) => {
      expect((await t.db.query(`SELECT to_regclass('public.customers') IS NOT NULL AS c, to_regclass('public.users') IS NULL AS u`)).rows[0]).toEqual({ c: true, u: true });
      expect((await t.new.query(`SELECT count(*)::int AS n FROM customers`)).rows[0].n).toBe(1);
    },
  },
  {
    name: 'rename_table and rename_column of it in one migration, then a new column',
    migrations: [
      users,
      {
        name: '02_reshape',
        operations: [
          { rename_table: { from: 'users', to: 'accounts' } },
          { rename_column: { table: 'accounts', from: 'email', to: 'login' } },
          { add_column: { table: 'accounts', column: { name: 'email', type: 'text', nullable: true } } },
        ],
      },
    ],
    afterStart: async (t) => {
      expect(await columnNames(t.new, t.newSchema, 'accounts')).toEqual(['id', 'login', 'legacy_code', 'score', 'email']);
      await t.new.query(`INSERT INTO accounts (id, login, email) VALUES (1, 'ann', 'ann@x')`);
      expect((await t.old.query(`SELECT email FROM users`)).rows).toEqual([{ email: 'ann' }]);
    },
    afterComplete: async (t) => {
      expect(await columnNames(t.db, 'public', 'accounts')).toEqual(['id', 'login', 'legacy_code', 'score', 'email']);
      expect((await t.new.query(`SELECT login, email FROM accounts`)).rows).toEqual([{ login: 'ann', email: 'ann@x' }]);
    },
  },
  {
    name: 'drop_table: the old version keeps it until complete',
    migrations: [users, { name: '02_drop_users', operations: [{ drop_table: { name: 'users' } }] }],
    afterStart: async (t) => {
      await t.old.query(`INSERT INTO users (id, email) VALUES (1, 'a@b')`);
      await expect(t.new.query(`SELECT 1 FROM ${t.newSchema}.users`)).rejects.toThrow(/does not exist/);
    },
    afterComplete: async (t) => {
      expect((await t.db.query(`SELECT to_regclass('public.users') AS t`)).rows[0].t).toBeNull();
    },
    afterRollback: async (t) => {
      expect((await t.old.query(`SELECT count(*)::int AS n FROM users`)).rows[0].n).toBe(1);
    },
  },
  {
    name: 'first migration: the old version is the bare table',
    setup: `CREATE TABLE things (id int PRIMARY KEY, label text NOT NULL)`,
    migrations: [{ name: '01_rename_label', operations: [{ rename_column: { table: 'things', from: 'label', to: 'title' } }] }],
    afterStart: async (t) => {
      expect(t.oldSchema).toBeNull();
      await t.old.query(`INSERT INTO things VALUES (1, 'x')`);
      expect((await t.new.query(`SELECT title FROM things`)).rows).toEqual([{ title: 'x' }]);
    },
    afterComplete: async (t) => {
      expect((await columnsOf(t.db, 'public', 'things')).map((c) => c.name)).toEqual(['id', 'title']);
    },
  },
]);
