import { expect } from 'vitest';
import { columnsOf, constraintsOf, indexesOf } from '../support/migrations.js';
import { runOperationCases } from '../support/cases.js';

const setup = `
  CREATE TABLE teams (id int PRIMARY KEY);
  INSERT INTO teams SELECT generate_series(1, 5);
  CREATE TABLE members (id int PRIMARY KEY, team int, handle text, email text, age int,
                        CONSTRAINT members_age_positive CHECK (age > 0),
                        CONSTRAINT members_team_handle UNIQUE (team, handle));
  INSERT INTO members SELECT g, g % 5 + 1, 'h' || g, 'm' || g || '@x', 20 + g % 50 FROM generate_series(1, 1000) g;
  CREATE TABLE tokens (value text NOT NULL, owner int); INSERT INTO tokens SELECT 't' || g, g FROM generate_series(1, 100) g;`;

runOperationCases('create_constraint, drop_constraint, drop_multicolumn_constraint, rename_constraint', [
  {
    name: 'create_constraint unique over two columns, with up fixing duplicates',
    setup,
    migrations: [
      {
        name: '01_unique_email',
        operations: [
          {
            create_constraint: {
              table: 'members',
              name: 'members_email_team_key',
              type: 'unique',
              columns: ['email', 'team'],
              up: { email: 'lower(email)', team: 'team' },
              down: { email: 'email', team: 'team' },
              index_parameters: { include_columns: ['id'] },
            },
          },
        ],
      },
    ],
    afterStart: async (t) => {
      await t.old.query(`INSERT INTO members VALUES (5000, 1, 'x', 'DUP@X', 30)`);
      await expect(t.new.query(`INSERT INTO members VALUES (5001, 1, 'y', 'dup@x', 30)`)).rejects.toThrow(/duplicate key/);
      expect((await t.new.query(`SELECT email FROM members WHERE id = 5000`)).rows[0].email).toBe('dup@x');
    },
    afterComplete: async (t) => {
      const constraints = await constraintsOf(t.db, 'public', 'members');
      expect(constraints.members_email_team_key).toBe('UNIQUE (email, team) INCLUDE (id)');
      expect(constraints.members_age_positive).toBe('CHECK ((age > 0))');
      expect(constraints.members_team_handle).toBe('UNIQUE (team, handle)');
    },
  },
  {
    name: 'create_constraint check and foreign key',
    setup,
    migrations: [
      {
        name: '01_checks',
        operations: [
          { create_constraint: { table: 'members', name: 'handle_short', type: 'check', columns: ['handle'], check: 'length(handle) < 10', up: { handle: 'left(handle, 9)' }, down: { handle: 'handle' } } },
          {
            create_constraint: {
              table: 'tokens',
              name: 'tokens_owner_fk',
              type: 'foreign_key',
              columns: ['owner'],
              references: { table: 'members', columns: ['id'], on_delete: 'CASCADE' },
              up: { owner: 'owner' },
              down: { owner: 'owner' },
            },
          },
        ],
      },
    ],
    afterStart: async (t) => {
      await expect(t.new.query(`INSERT INTO members (id, handle) VALUES (9000, 'far-too-long-handle')`)).rejects.toThrow(/handle_short/);
      await t.old.query(`INSERT INTO members (id, handle) VALUES (9001, 'far-too-long-handle')`);
      expect((await t.new.query(`SELECT handle FROM members WHERE id = 9001`)).rows[0].handle).toBe('far-too-l');
      await expect(t.new.query(`INSERT INTO tokens VALUES ('z', 424242)`)).rejects.toThrow(/tokens_owner_fk/);
    },
    afterComplete: async (t) => {
      expect((await constraintsOf(t.db, 'public', 'members')).handle_short).toBe('CHECK ((length(handle) < 10))');
      expect((await constraintsOf(t.db, 'public', 'tokens')).tokens_owner_fk).toBe('FOREIGN KEY (owner) REFERENCES members(id) ON DELETE CASCADE');
    },
  },
  {
    name: 'create_constraint primary key on a table without one',
    setup,
    migrations: [{ name: '01_pk', operations: [{ create_constraint: { table: 'tokens', name: 'tokens_pkey', type: 'primary_key', columns: ['value'], up: { value: 'value' }, down: { value: 'value' } } }] }],
    afterComplete: async (t) => {
      expect(await constraintsOf(t.db, 'public', 'tokens')).toEqual({ tokens_pkey: 'PRIMARY KEY (value)' });
      expect((await columnsOf(t.db, 'public', 'tokens')).find((c) => c.name === 'value')).toMatchObject({ nullable: false });
    },
  },
  {
    name: 'drop_constraint: the new version may write what the check forbade; down repairs it for the old',
    setup,
    migrations: [{ name: '01_drop_check', operations: [{ drop_constraint: { table: 'members', name: 'members_age_positive', up: 'age', down: 'greatest(age, 1)' } }] }],
    afterStart: async (t) => {
      await t.new.query(`INSERT INTO members (id, age) VALUES (7000, -5)`);
      expect((await t.old.query(`SELECT age FROM members WHERE id = 7000`)).rows[0].age).toBe(1);
      expect((await t.new.query(`SELECT age FROM members WHERE id = 7000`)).rows[0].age).toBe(-5);
    },
    afterComplete: async (t) => {
      expect(Object.keys(await constraintsOf(t.db, 'public', 'members'))).not.toContain('members_age_positive');
      await t.db.query(`INSERT INTO members (id, age) VALUES (7001, -1)`);
    },
  },
  {
    name: 'drop_multicolumn_constraint',
    setup,
    migrations: [
      {
        name: '01_drop_unique',
        operations: [{ drop_multicolumn_constraint: { table: 'members', name: 'members_team_handle', up: { team: 'team', handle: 'handle' }, down: { team: 'team', handle: "handle || '-' || id" } } }],
      },
    ],
    afterStart: async (t) => {
      await t.new.query(`INSERT INTO members (id, team, handle) VALUES (8000, 1, 'h5'), (8001, 1, 'h5')`);
      expect((await t.old.query(`SELECT handle FROM members WHERE id IN (8000, 8001) ORDER BY id`)).rows).toEqual([{ handle: 'h5-8000' }, { handle: 'h5-8001' }]);
    },
    afterComplete: async (t) => {
      expect(Object.keys(await constraintsOf(t.db, 'public', 'members'))).toEqual(['members_age_positive', 'members_pkey']);
      expect(Object.keys(await indexesOf(t.db, 'public', 'members'))).toEqual(['members_pkey']);
    },
  },
  {
    name: 'rename_constraint',
    setup,
    migrations: [
      {
        name: '01_rename',
        operations: [
          { rename_constraint: { table: 'members', from: 'members_age_positive', to: 'age_is_positive' } },
          { rename_constraint: { table: 'members', from: 'members_team_handle', to: 'one_handle_per_team' } },
        ],
      },
    ],
    afterStart: async (t) => {
      // Renamed only at complete: until then the old names hold and the new ones are free.
      const names = Object.keys(await constraintsOf(t.db, 'public', 'members'));
      expect(names).toContain('members_age_positive');
      expect(names).toContain('members_team_handle');
      expect(names).not.toContain('age_is_positive');
      expect(names).not.toContain('one_handle_per_team');
    },
    afterComplete: async (t) => {
      expect(Object.keys(await constraintsOf(t.db, 'public', 'members'))).toEqual(['age_is_positive', 'members_pkey', 'one_handle_per_team']);
    },
    afterRollback: async (t) => {
      expect(Object.keys(await constraintsOf(t.db, 'public', 'members'))).toEqual(['members_age_positive', 'members_pkey', 'members_team_handle']);
    },
  },
]);
