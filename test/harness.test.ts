import { describe, expect, it } from 'vitest';
import { usePostgres } from './support/harness.js';

describe('test harness', () => {
  const pg = usePostgres();

  it('gives each test a fresh database on a real server', async () => {
    const { rows } = await pg.query<{ db: string; version: string }>('SELECT current_database() AS db, version()');
    expect(rows[0]!.db).toMatch(/^t_[0-9a-f]{12}$/);
    expect(rows[0]!.version).toMatch(/^PostgreSQL \d+/);
    await pg.query('CREATE TABLE only_here (id int)');
  });

  it('does not share databases between tests', async () => {
    const { rows } = await pg.query(`SELECT to_regclass('only_here') AS t`);
    expect(rows[0]!.t).toBeNull();
  });
});
