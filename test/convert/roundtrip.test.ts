/**
 * Converted migrations run for real: the schema is set up in a fresh database with plain SQL,
 * the migration SQL is converted, written as YAML, and applied with `tandem init` and
 * `tandem start FILE --complete`; then the physical schema is checked. Operations the engine
 * does not implement yet are skipped by name, and run as soon as it does.
 */
import { writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { convertSql } from '../../src/convert/convert.js';
import { toYaml } from '../../src/convert/emit.js';
import type { OperationKind } from '../../src/migration/format.js';
import { OPERATIONS } from '../../src/operations/index.js';
import { usePostgres } from '../support/harness.js';
import { columnsOf, constraintsOf, indexesOf, ok, tandem } from '../support/migrations.js';

const supported = (...kinds: OperationKind[]) => kinds.every((kind) => OPERATIONS[kind] !== undefined);

describe('convert round-trips through tandem start on PostgreSQL', () => {
  const pg = usePostgres();

  /** Sets up `before`, converts `sql`, and applies it with tandem start --complete. */
  async function roundTrip(before: string, sql: string, expectedKinds: OperationKind[]): Promise<void> {
    if (before) await pg.query(before);
    const conversion = await convertSql(sql, 'migration.sql', { name: '02_converted', schema: 'public' });
    expect(conversion.migrations.flatMap((m) => m.operations.map((op) => op.kind))).toEqual(expectedKinds);
    const dir = await mkdtemp(join(tmpdir(), 'tandem-convert-'));
    ok(await tandem(pg.url, ['init']));
    // Several migrations (raw SQL runs alone) are started and completed in order.
    for (const migration of conversion.migrations) {
      const file = join(dir, `${migration.name}.yaml`);
      await writeFile(file, toYaml(migration));
      ok(await tandem(pg.url, ['start', file, '--complete']));
    }
  }

  async function inspect<T>(read: (client: Awaited<ReturnType<typeof pg.client>>) => Promise<T>): Promise<T> {
    return read(await pg.client());
  }

  it.skipIf(!supported('create_table'))('create_table: columns, keys, checks, references, defaults, identity', async () => {
    await roundTrip(
      'CREATE TABLE teams (id bigint PRIMARY KEY);',
      `CREATE TABLE members (
         id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         email text NOT NULL UNIQUE CHECK (email LIKE '%@%'),
         team_id bigint REFERENCES teams (id) ON DELETE CASCADE,
         score numeric(6,2) DEFAULT 0,
         joined_at timestamptz DEFAULT now()
       );
       COMMENT ON COLUMN members.email IS 'login';`,
      ['create_table'],
    );
    expect(await inspect((db) => columnsOf(db, 'public', 'members'))).toEqual([
      { name: 'id', type: 'bigint', nullable: false, default: null },
      { name: 'email', type: 'text', nullable: false, default: null },
      { name: 'team_id', type: 'bigint', nullable: true, default: null },
      { name: 'score', type: 'numeric(6,2)', nullable: true, default: '0' },
      { name: 'joined_at', type: 'timestamp with time zone', nullable: true, default: 'now()' },
    ]);
    expect(await inspect((db) => constraintsOf(db, 'public', 'members'))).toMatchObject({
      members_pkey: 'PRIMARY KEY (id)',
      members_email_check: "CHECK ((email ~~ '%@%'::text))",
      members_team_id_fkey: 'FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE CASCADE',
    });
    const { rows } = await pg.query(`SELECT col_description('public.members'::regclass, 2) AS comment, pg_get_serial_sequence('public.members', 'id') IS NOT NULL AS identity`);
    expect(rows[0]).toEqual({ comment: 'login', identity: true });
  });

  it.skipIf(!supported('add_column'))('add_column: default, nullable, check', async () => {
    await roundTrip(
      "CREATE TABLE orders (id bigint PRIMARY KEY); INSERT INTO orders VALUES (1), (2);",
      "ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new', ADD COLUMN note text CHECK (note <> '');",
      ['add_column', 'add_column'],
    );
    expect(await inspect((db) => columnsOf(db, 'public', 'orders'))).toEqual([
      { name: 'id', type: 'bigint', nullable: false, default: null },
      { name: 'status', type: 'text', nullable: false, default: "'new'::text" },
      { name: 'note', type: 'text', nullable: true, default: null },
    ]);
    const { rows } = await pg.query('SELECT status FROM orders ORDER BY id');
    expect(rows).toEqual([{ status: 'new' }, { status: 'new' }]);
    expect(Object.values(await inspect((db) => constraintsOf(db, 'public', 'orders')))).toContain("CHECK ((note <> ''::text))");
  });

  it.skipIf(!supported('add_column'))('add_column NOT NULL without a default fills rows with the edited up', async () => {
    await pg.query('CREATE TABLE orders (id bigint PRIMARY KEY); INSERT INTO orders VALUES (1);');
    const conversion = await convertSql('ALTER TABLE orders ADD COLUMN region text NOT NULL;', 'm.sql', { name: '02_region', schema: 'public' });
    // What the REVIEW note asks the user to do: give existing rows a value.
    const edited = toYaml(conversion.migrations[0]!).replace('up: "REVIEW: the value existing rows get for region"', "up: \"'eu'\"");
    const file = join(await mkdtemp(join(tmpdir(), 'tandem-convert-')), '02_region.yaml');
    await writeFile(file, edited);
    ok(await tandem(pg.url, ['init']));
    ok(await tandem(pg.url, ['start', file, '--complete']));
    expect((await pg.query('SELECT region FROM orders')).rows).toEqual([{ region: 'eu' }]);
    expect((await inspect((db) => columnsOf(db, 'public', 'orders')))[1]).toMatchObject({ name: 'region', nullable: false });
  });

  it.skipIf(!supported('drop_column', 'rename_column', 'rename_table'))('drop_column, rename_column, rename_table', async () => {
    await roundTrip(
      'CREATE TABLE customers (id bigint PRIMARY KEY, email text, nickname text);',
      'ALTER TABLE customers DROP COLUMN nickname;\nALTER TABLE customers RENAME COLUMN email TO email_address;\nALTER TABLE customers RENAME TO clients;',
      ['drop_column', 'rename_column', 'rename_table'],
    );
    expect((await inspect((db) => columnsOf(db, 'public', 'clients'))).map((c) => c.name)).toEqual(['id', 'email_address']);
    expect((await pg.query(`SELECT to_regclass('public.customers') AS old`)).rows[0]).toEqual({ old: null });
  });

  it.skipIf(!supported('create_index', 'drop_index'))('create_index with options, drop_index', async () => {
    await roundTrip(
      'CREATE TABLE events (id bigint PRIMARY KEY, kind text, at timestamptz, tags text[]); CREATE INDEX events_old ON events (at);',
      [
        'CREATE UNIQUE INDEX events_kind_at ON events (kind COLLATE "C" text_pattern_ops DESC NULLS LAST, at) WITH (fillfactor = 70) WHERE kind IS NOT NULL;',
        'CREATE INDEX ON events USING gin (tags);',
        'DROP INDEX events_old;',
      ].join('\n'),
      ['create_index', 'create_index', 'drop_index'],
    );
    expect(await inspect((db) => indexesOf(db, 'public', 'events'))).toEqual({
      events_pkey: 'CREATE UNIQUE INDEX events_pkey ON public.events USING btree (id)',
      events_kind_at:
        'CREATE UNIQUE INDEX events_kind_at ON public.events USING btree (kind COLLATE "C" text_pattern_ops DESC NULLS LAST, at) WITH (fillfactor=\'70\') WHERE (kind IS NOT NULL)',
      events_tags_idx: 'CREATE INDEX events_tags_idx ON public.events USING gin (tags)',
    });
  });

  it.skipIf(!supported('drop_table', 'set_replica_identity', 'sql'))('drop_table, set_replica_identity, raw sql', async () => {
    await roundTrip(
      'CREATE TABLE legacy (id bigint PRIMARY KEY); CREATE TABLE feed (id bigint PRIMARY KEY);',
      "DROP TABLE legacy;\nALTER TABLE feed REPLICA IDENTITY FULL;\nCREATE TYPE mood AS ENUM ('sad', 'ok');",
      ['drop_table', 'set_replica_identity', 'sql'],
    );
    const { rows } = await pg.query(
      `SELECT to_regclass('public.legacy') AS legacy, (SELECT relreplident FROM pg_class WHERE oid = 'public.feed'::regclass) AS identity,
              (SELECT count(*)::int FROM pg_type WHERE typname = 'mood') AS moods`,
    );
    expect(rows[0]).toEqual({ legacy: null, identity: 'f', moods: 1 });
  });

  it.skipIf(!supported('alter_column'))('alter_column: type with USING, SET NOT NULL, defaults, comment', async () => {
    await roundTrip(
      "CREATE TABLE accounts (id bigint PRIMARY KEY, balance text, owner text, plan text); INSERT INTO accounts VALUES (1, '12.50', 'ann', NULL);",
      [
        'ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(12,2) USING balance::numeric;',
        'ALTER TABLE accounts ALTER COLUMN owner SET NOT NULL;',
        "ALTER TABLE accounts ALTER COLUMN plan SET DEFAULT 'free';",
        "COMMENT ON COLUMN accounts.owner IS 'who pays';",
      ].join('\n'),
      ['alter_column', 'alter_column', 'alter_column', 'alter_column'],
    );
    expect(await inspect((db) => columnsOf(db, 'public', 'accounts'))).toEqual([
      { name: 'id', type: 'bigint', nullable: false, default: null },
      { name: 'balance', type: 'numeric(12,2)', nullable: true, default: null },
      { name: 'owner', type: 'text', nullable: false, default: null },
      { name: 'plan', type: 'text', nullable: true, default: "'free'::text" },
    ]);
    expect((await pg.query('SELECT balance::text FROM accounts')).rows).toEqual([{ balance: '12.50' }]);
  });

  it.skipIf(!supported('create_constraint', 'drop_constraint', 'rename_constraint'))('create_constraint, rename_constraint, drop_constraint', async () => {
    await roundTrip(
      'CREATE TABLE users (id bigint PRIMARY KEY); CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, total numeric, code text CONSTRAINT old_check CHECK (code <> \'\'));',
      [
        'ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);',
        'ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total > 0);',
        'ALTER TABLE orders ADD UNIQUE (code);',
        'ALTER TABLE orders RENAME CONSTRAINT total_positive TO total_above_zero;',
        'ALTER TABLE orders DROP CONSTRAINT old_check;',
      ].join('\n'),
      ['create_constraint', 'create_constraint', 'create_constraint', 'rename_constraint', 'drop_constraint'],
    );
    expect(await inspect((db) => constraintsOf(db, 'public', 'orders'))).toEqual({
      orders_pkey: 'PRIMARY KEY (id)',
      orders_user_fk: 'FOREIGN KEY (user_id) REFERENCES users(id)',
      total_above_zero: 'CHECK ((total > (0)::numeric))',
      orders_code_key: 'UNIQUE (code)',
    });
  });
});
