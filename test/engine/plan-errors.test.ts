/**
 * What planning refuses, as kinds and facts: the words of each kind are checked once, in
 * test/unit/errors.test.ts, and what the user reads on stderr in validation.test.ts.
 */
import { beforeEach, describe, it } from 'vitest';
import { planMigration } from '../../src/engine/plan-migration.js';
import { parseMigration } from '../../src/migration/load.js';
import { expectError } from '../support/errors.js';
import { usePostgres } from '../support/harness.js';

describe('planning refusals, by kind and facts', () => {
  const pg = usePostgres();
  const context = { schema: 'public', stateSchema: 'tandem', migrationName: '05_bad', versionSchema: 'public_05_bad', previousVersionSchema: null };

  beforeEach(async () => {
    await pg.query(`CREATE TABLE users (id int PRIMARY KEY, email text, name text, CONSTRAINT email_set CHECK (email <> '')); CREATE TABLE teams (id int PRIMARY KEY)`);
  });

  async function plan(operations: object[]) {
    const { migration } = parseMigration(JSON.stringify({ operations }), { file: '05_bad.json', format: 'json' });
    return planMigration(await pg.client(), migration, context, '05_bad.json');
  }

  it('names what the schema does not have, with what it has', async () => {
    await expectError(
      plan([{ add_column: { table: 'userz', column: { name: 'x', type: 'int', nullable: true } } }]),
      { kind: 'table_unknown', schema: 'public', table: 'userz', known: ['teams', 'users'] },
      { file: '05_bad.json', operation: 0, kind: 'add_column', field: 'table' },
    );
    await expectError(
      plan([{ rename_column: { table: 'users', from: 'name', to: 'full_name' } }, { rename_column: { table: 'users', from: 'mail', to: 'email_address' } }]),
      { kind: 'column_unknown', table: 'users', column: 'mail', known: ['id', 'email', 'full_name'] },
      { operation: 1, kind: 'rename_column', field: 'from' },
    );
    await expectError(plan([{ drop_constraint: { table: 'users', name: 'nope', up: 'email', down: 'email' } }]), {
      kind: 'constraint_unknown',
      table: 'users',
      constraint: 'nope',
      known: ['email_set', 'users_pkey'],
    });
  });

  it('names what already exists', async () => {
    await expectError(plan([{ create_table: { name: 'users', columns: [{ name: 'id', type: 'int' }] } }]), { kind: 'table_exists', schema: 'public', name: 'users' }, { field: 'name' });
    await expectError(plan([{ add_column: { table: 'users', column: { name: 'email', type: 'text' } } }]), { kind: 'column_exists', table: 'users', column: 'email' }, { field: 'column.name' });
    await expectError(
      plan([{ create_table: { name: 't', columns: [{ name: 'a', type: 'int' }, { name: 'a', type: 'text' }] } }]),
      { kind: 'column_duplicate', column: 'a' },
      { field: 'columns[1].name' },
    );
  });

  it('refuses what cannot be done without downtime or without a value', async () => {
    await expectError(plan([{ add_column: { table: 'users', column: { name: 'age', type: 'int' } } }]), { kind: 'add_column_not_null', column: 'age' }, { field: 'up' });
    await expectError(plan([{ drop_table: { name: 'teams' } }, { sql: { up: 'SELECT 1' } }]), { kind: 'sql_not_isolated' }, { operation: 1, kind: 'sql' });
    await expectError(
      plan([{ add_column: { table: 'users', up: 'upper(emial)', column: { name: 'shout', type: 'text', nullable: true } } }]),
      { kind: 'expression_invalid', reason: 'column "emial" does not exist' },
      { operation: 0, kind: 'add_column', field: 'up' },
    );
  });
});
