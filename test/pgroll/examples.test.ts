import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { ok, start, tandem } from '../support/migrations.js';

const examples = join(import.meta.dirname, '../fixtures/pgroll-examples/examples');
const pg = usePostgres();

describe("pgroll's examples folder", () => {
  it('applies in the order of its ledger, each with start --complete', async () => {
    const ledger = (await readFile(join(examples, '.ledger'), 'utf8')).split('\n').filter(Boolean);
    expect(ledger).toHaveLength(56);
    const failures: string[] = [];
    for (const file of ledger) {
      const result = await tandem(pg.url, ['start', join(examples, file), '--complete']);
      if (result.code !== 0) failures.push(`${file}: ${result.stderr}`);
    }
    expect(failures).toEqual([]);
    const db = await pg.client();
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM tandem.migrations WHERE status = 'complete'`);
    expect(rows).toEqual([{ n: 56 }]);
  }, 600_000);
});

describe('up/down expressions the server cannot plan', () => {  // 35_alter_column_multiple of pgroll's examples has the same kind of down: it names a column
  // that does not exist, which pgroll never notices when the migration is started and completed at once.
  const brokenDown = [{ alter_column: { table: 'events', column: 'name', type: 'text', up: 'name', down: 'event_name' } }];

  it('refuse start, warn with --complete (no version writes through down), and warn with --skip-validation', async () => {
    await pg.query(`CREATE TABLE events (id int PRIMARY KEY, name varchar(10)); INSERT INTO events VALUES (1, 'a')`);
    const refused = await start(pg.url, '01_alter', brokenDown);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('operation 0 (alter_column), field down: the expression does not work: column "event_name" does not exist');

    const skipped = ok(await start(pg.url, '01_alter', brokenDown, ['--skip-validation']));
    expect(skipped.stderr).toContain('tandem: warning: ');
    expect(skipped.stderr).toContain('field down: the expression does not work: column "event_name" does not exist');
    ok(await tandem(pg.url, ['rollback']));

    const completed = ok(await start(pg.url, '01_alter', brokenDown, ['--complete']));
    expect(completed.stderr).toContain('field down: the expression does not work');
    const { rows } = await pg.query(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'name'`);
    expect(rows).toEqual([{ type: 'text' }]);
  });

  it('still refuse a broken up expression with --complete: the backfill runs it', async () => {
    await pg.query(`CREATE TABLE events (id int PRIMARY KEY, name varchar(10))`);
    const refused = await start(pg.url, '01_alter', [{ alter_column: { table: 'events', column: 'name', type: 'text', up: 'nom', down: 'name' } }], ['--complete']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('field up: the expression does not work: column "nom" does not exist');
  });
});
