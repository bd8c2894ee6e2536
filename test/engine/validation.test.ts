import { describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, start, tandem } from '../support/migrations.js';
import { snapshot } from '../support/cases.js';

/** Every validation error: exit 1, a message naming file, operation, kind and field, and nothing changed. */
describe('validation before anything changes', () => {
  const pg = usePostgres();
  const setup = `CREATE TABLE users (id int PRIMARY KEY, email text, name text); CREATE TABLE teams (id int PRIMARY KEY)`;

  let prepared = '';
  async function expectRejected(operations: object[], expected: RegExp, extra: string[] = []) {
    if (prepared !== pg.url) await pg.query(setup);
    prepared = pg.url;
    const db = await pg.client();
    const before = await snapshot(db);
    const stateBefore = (await db.query(`SELECT to_regnamespace('tandem') IS NULL AS absent`)).rows[0].absent;
    const result = await start(pg.url, '05_bad', operations, extra);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/05_bad\.json: operation \d+ \(\w+\)/);
    expect(result.stderr).toMatch(expected);
    expect(await snapshot(db)).toEqual(before);
    expect((await db.query(`SELECT to_regnamespace('tandem') IS NULL AS absent`)).rows[0].absent, 'no state schema was created').toBe(stateBefore);
    return result.stderr;
  }

  it('unknown table', async () => {
    const message = await expectRejected(
      [{ add_column: { table: 'userz', column: { name: 'x', type: 'int', nullable: true } } }],
      /operation 0 \(add_column\), field table: table "userz" does not exist in schema "public"/,
    );
    expect(message).toContain('hint: tables the new version sees: teams, users');
  });

  it('unknown column, named with its field', async () => {
    await expectRejected(
      [{ rename_column: { table: 'users', from: 'name', to: 'full_name' } }, { rename_column: { table: 'users', from: 'mail', to: 'email_address' } }],
      /operation 1 \(rename_column\), field from: column "mail" does not exist in table "users"/,
    );
  });

  it('a column renamed earlier in the migration is gone under its old name', async () => {
    await expectRejected(
      [{ rename_column: { table: 'users', from: 'email', to: 'email_address' } }, { drop_column: { table: 'users', column: 'email' } }],
      /operation 1 \(drop_column\), field column: column "email" does not exist/,
    );
  });

  it('duplicate names: table, column, index, column in one table', async () => {
    await expectRejected([{ create_table: { name: 'users', columns: [{ name: 'id', type: 'int' }] } }], /field name: a table or index named "users" already exists/);
    await expectRejected([{ add_column: { table: 'users', column: { name: 'email', type: 'text' } } }], /field column.name: column "email" already exists in table "users"/);
    await expectRejected(
      [{ create_index: { name: 'users_pkey', table: 'users', columns: [{ column: 'email' }] } }],
      /field name: a table or index named "users_pkey" already exists/,
    );
    await expectRejected(
      [{ create_table: { name: 't', columns: [{ name: 'a', type: 'int' }, { name: 'a', type: 'text' }] } }],
      /field columns\[1\].name: column "a" is defined twice/,
    );
  });

  it('an up expression that does not work is caught before start', async () => {
    await expectRejected(
      [{ add_column: { table: 'users', up: 'upper(emial)', column: { name: 'shout', type: 'text', nullable: true } } }],
      /operation 0 \(add_column\), field up: the expression does not work: column "emial" does not exist/,
    );
  });

  it('an up expression of the wrong type is caught before start', async () => {
    await expectRejected(
      [{ add_column: { table: 'users', up: 'id', column: { name: 'n', type: 'uuid', nullable: true } } }],
      /field up: the expression does not work: cannot cast type integer to uuid/,
    );
  });

  it('a NOT NULL column without default or up', async () => {
    const message = await expectRejected(
      [{ add_column: { table: 'users', column: { name: 'age', type: 'int' } } }],
      /field up: column "age" is NOT NULL without a default, so existing rows need a value/,
    );
    expect(message).toContain('hint: give `up`');
  });

  it('raw SQL at start must be alone', async () => {
    await expectRejected(
      [{ drop_table: { name: 'teams' } }, { sql: { up: 'SELECT 1' } }],
      /operation 1 \(sql\): a sql operation that runs at start must be the only operation of its migration/,
    );
  });

  it('a foreign key to an unknown table', async () => {
    await expectRejected(
      [{ add_column: { table: 'users', column: { name: 'team', type: 'int', nullable: true, references: { name: 'fk', table: 'squads', column: 'id' } } } }],
      /field column.references.table: table "squads" does not exist/,
    );
  });

  it('an unknown operation and a mistyped field, from the file itself', async () => {
    await pg.query(setup);
    const file = await migrationFile('06_typo', { operations: [{ drop_table: { name: 'teams' } }, { rename_colum: {} }] });
    const result = await tandem(pg.url, ['start', file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('06_typo.json: operation 1: unknown operation "rename_colum"');
    expect(result.stderr).toContain('hint: did you mean "rename_column"?');
    const typed = await tandem(pg.url, ['start', await migrationFile('07_type', { operations: [{ create_index: { name: 'i', table: 'users', columns: 'email' } }] })]);
    expect(typed.stderr).toContain('07_type.json: operation 0 (create_index), field columns: must be an array, got "email"');
  });

  it('a version schema name over 63 bytes', async () => {
    await pg.query(setup);
    const name = `01_${'x'.repeat(60)}`;
    const result = await tandem(pg.url, ['start', await migrationFile(name, { operations: [{ drop_table: { name: 'teams' } }] })]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/field version_schema: the version schema name "public_01_x+" is longer than PostgreSQL's 63 bytes/);
  });

  it('an unknown --schema', async () => {
    const result = await tandem(pg.url, ['--schema', 'nowhere', 'start', await migrationFile('01_x', { operations: [{ drop_table: { name: 't' } }] })]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('schema "nowhere" does not exist');
  });

  it('the same migration twice', async () => {
    await pg.query(setup);
    const file = await migrationFile('01_once', { operations: [{ drop_table: { name: 'teams' } }] });
    ok(await tandem(pg.url, ['start', file, '--complete']));
    const again = await tandem(pg.url, ['start', file]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('migration "01_once" was already applied');
  });

  it('a second migration while one is active, with --max-active-migrations 1', async () => {
    await pg.query(setup);
    ok(await start(pg.url, '01_first', [{ drop_table: { name: 'teams' } }]));
    const second = await start(pg.url, '02_second', [{ rename_column: { table: 'users', from: 'name', to: 'n' } }], ['--max-active-migrations', '1']);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('migration "01_first" is active');
    expect(second.stderr).toContain('before starting "02_second"');
  });

  it('start names a command that works from every unfinished status, and that command does work', async () => {
    // Each status is set on a real started migration, at a step from which the named command can run.
    const cases = [
      { status: 'starting', step: `jsonb_array_length(plan->'start')`, hint: 'resume its start (tandem start FIRST, or tandem backfill) or roll it back (tandem rollback)', run: ['backfill'] },
      { status: 'active', step: '0', hint: 'complete it (tandem complete) or roll it back (tandem rollback)', run: ['complete'] },
      { status: 'completing', step: '0', hint: 'finish its complete (tandem complete)', run: ['complete'] },
      { status: 'rolling_back', step: '0', hint: 'finish its rollback (tandem rollback)', run: ['rollback'] },
    ];
    await pg.query(setup);
    const second = await migrationFile('02_second', { operations: [{ rename_column: { table: 'users', from: 'name', to: 'n' } }] });
    for (const [i, c] of cases.entries()) {
      const name = `01_first_${i}`;
      const first = await migrationFile(name, { operations: [{ add_column: { table: 'users', column: { name: `c${i}`, type: 'int', nullable: true } } }] });
      ok(await tandem(pg.url, ['start', first]));
      await pg.query(`UPDATE tandem.migrations SET status = '${c.status}', step = ${c.step} WHERE name = '${name}'`);

      // Stacking aside (--max-active-migrations 1): an active migration is one more unfinished status.
      const other = await tandem(pg.url, ['start', second, '--max-active-migrations', '1']);
      expect(other.code).toBe(1);
      // The hint names the file the migration was started from.
      expect(other.stderr, c.status).toContain(`hint: ${c.hint.replace('FIRST', first)} before starting "02_second"`);
      if (c.status !== 'starting') {
        const same = await tandem(pg.url, ['start', first]);
        expect(same.code).toBe(1);
        expect(same.stderr, c.status).toContain(`hint: ${c.status === 'active' ? 'next: tandem complete, or tandem rollback' : c.hint.replace('FIRST', first)}\n`);
      }
      // The command the hint names first takes the migration out of that status.
      ok(await tandem(pg.url, c.run));
      if (c.status === 'starting') ok(await tandem(pg.url, ['complete']));
      const { rows } = await pg.query(`SELECT status FROM tandem.migrations WHERE name = '${name}'`);
      expect(rows[0].status, c.status).toBe(c.status === 'rolling_back' ? 'rolled_back' : 'complete');
    }
  });

  it('complete and rollback with nothing active', async () => {
    for (const command of ['complete', 'rollback']) {
      const result = await tandem(pg.url, [command]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/no migration is active in schema "public"/);
    }
  });
});
