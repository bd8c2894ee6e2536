/**
 * Whatever goes wrong while an operation is planned reaches the user as a TandemError that names the
 * file, the operation's index and its kind, and nothing is changed: a defect of tandem's own (a plain
 * Error out of a planner) as much as a refusal by the server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { OPERATIONS } from '../../src/operations/index.js';
import { usePostgres } from '../support/harness.js';
import { start } from '../support/migrations.js';
import { snapshot } from '../support/cases.js';

describe('errors while planning an operation', () => {
  const pg = usePostgres();
  const original = OPERATIONS.rename_table;
  afterEach(() => {
    OPERATIONS.rename_table = original;
  });

  it('an internal error names the file, operation and kind, and changes nothing', async () => {
    await pg.query(`CREATE TABLE users (id int PRIMARY KEY, email text)`);
    const db = await pg.client();
    const before = await snapshot(db);
    OPERATIONS.rename_table = () => {
      throw new Error('the model lost track of something');
    };
    const result = await start(pg.url, '03_broken', [
      { add_column: { table: 'users', column: { name: 'age', type: 'int', nullable: true } } },
      { rename_table: { from: 'users', to: 'people' } },
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/03_broken\.json: operation 1 \(rename_table\): planning failed: the model lost track of something/);
    expect(result.stderr).toContain('hint: nothing was changed; this is a defect in tandem');
    expect(await snapshot(db)).toEqual(before);
  });

  it('a database error while planning names the operation too', async () => {
    await pg.query(`CREATE TABLE users (id int PRIMARY KEY, email text)`);
    OPERATIONS.rename_table = async (_body, planner) => {
      await planner.inspector.volatility('no_such_function()', 'int');
    };
    const result = await start(pg.url, '03_broken', [{ rename_table: { from: 'users', to: 'people' } }]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/03_broken\.json: operation 0 \(rename_table\)/);
    expect(result.stderr).toContain('no_such_function');
  });
});
