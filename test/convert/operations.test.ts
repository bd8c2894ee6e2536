/**
 * SQL to operations, one case per operation the format has (and the statements that must fall
 * back to `sql`). Every result also passes the validator `tandem start` uses (convertSql checks
 * it, and the test checks again through the YAML text a user would get).
 */
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { convertSql, migrationDocument, type Conversion } from '../../src/convert/convert.js';
import { conversionHeader, renderConversion, toYaml } from '../../src/convert/emit.js';
import { parseMigration } from '../../src/migration/load.js';
import { expectError } from '../support/errors.js';

async function convert(sql: string, schema = 'public') {
  const conversion = await convertSql(sql, 'case.sql', { name: 'case', schema });
  // What a user gets must load exactly as tandem start would load it, once its placeholders are filled in.
  for (const migration of conversion.migrations) {
    const loaded = parseMigration(toYaml(migration), { file: `${migration.name}.yaml`, format: 'yaml', allowPlaceholders: true });
    expect(loaded.migration.operations.map((op) => ({ [op.kind]: op.body }))).toEqual(migrationDocument(migration).operations);
  }
  return conversion;
}

/** Every operation of every migration, in order. */
function allOperations(conversion: Conversion) {
  return conversion.migrations.flatMap((migration) => migrationDocument(migration).operations);
}

async function operations(sql: string, schema?: string) {
  return allOperations(await convert(sql, schema));
}

async function notes(sql: string) {
  return (await convert(sql)).migrations.flatMap((m) => m.operations.flatMap((op) => op.notes.map((n) => `${n.level}: ${n.text}`)));
}

describe('convert: one operation per statement kind', () => {
  it('create_table with every column feature', async () => {
    const sql = `CREATE TABLE public.accounts (
      id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 5) PRIMARY KEY,
      email text NOT NULL UNIQUE CHECK (email LIKE '%@%'),
      team_id bigint REFERENCES teams (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
      balance numeric(12, 2) DEFAULT 0.00 NOT NULL,
      created_at timestamptz DEFAULT now(),
      tags text[] DEFAULT '{}'::text[],
      doubled bigint GENERATED ALWAYS AS (id * 2) STORED,
      "Mixed" "MyType"
    );`;
    expect(await operations(sql)).toEqual([
      {
        create_table: {
          name: 'accounts',
          columns: [
            { name: 'id', type: 'bigint', generated: { identity: { user_specified_values: 'ALWAYS', sequence_options: 'START WITH 100 INCREMENT BY 5' } }, pk: true, nullable: false },
            { name: 'email', type: 'text', unique: true, check: { name: 'accounts_email_check', constraint: "email LIKE '%@%'" }, nullable: false },
            { name: 'team_id', type: 'bigint', references: { name: 'accounts_team_id_fkey', table: 'teams', column: 'id', on_delete: 'SET NULL', deferrable: true, initially_deferred: true }, nullable: true },
            { name: 'balance', type: 'numeric(12,2)', default: '0.00', nullable: false },
            { name: 'created_at', type: 'timestamptz', default: 'now()', nullable: true },
            { name: 'tags', type: 'text[]', default: "'{}'::text[]", nullable: true },
            { name: 'doubled', type: 'bigint', generated: { expression: 'id * 2' }, nullable: true },
            { name: 'Mixed', type: '"MyType"', nullable: true },
          ],
        },
      },
    ]);
  });

  it('create_table with table constraints and comments merged in', async () => {
    const sql = `CREATE TABLE bookings (
      id bigint, room int NOT NULL, during tstzrange, guest_id bigint, code varchar(10),
      PRIMARY KEY (id),
      CONSTRAINT code_upper CHECK (code = upper(code)),
      UNIQUE (room, code) INCLUDE (guest_id) WITH (fillfactor = 80),
      CONSTRAINT bookings_guest_fk FOREIGN KEY (guest_id) REFERENCES guests (id) MATCH FULL ON UPDATE CASCADE,
      EXCLUDE USING gist (room WITH =, during WITH &&) WHERE (room > 0)
    );
    COMMENT ON TABLE bookings IS 'room bookings';
    COMMENT ON COLUMN bookings.code IS 'booking code';`;
    const [createTable] = await operations(sql);
    expect(createTable).toEqual({
      create_table: {
        name: 'bookings',
        comment: 'room bookings',
        columns: [
          { name: 'id', type: 'bigint', pk: true, nullable: false },
          { name: 'room', type: 'integer', nullable: false },
          { name: 'during', type: 'tstzrange', nullable: true },
          { name: 'guest_id', type: 'bigint', nullable: true },
          { name: 'code', type: 'varchar(10)', nullable: true, comment: 'booking code' },
        ],
        constraints: [
          { name: 'code_upper', type: 'check', check: 'code = upper(code)' },
          { name: 'bookings_room_code_key', type: 'unique', columns: ['room', 'code'], index_parameters: { include_columns: ['guest_id'], storage_parameters: 'fillfactor = 80' } },
          { name: 'bookings_guest_fk', type: 'foreign_key', columns: ['guest_id'], references: { table: 'guests', columns: ['id'], match_type: 'FULL', on_update: 'CASCADE' } },
          { name: 'bookings_room_during_excl', type: 'exclude', exclude: { index_method: 'gist', elements: 'room WITH =, during WITH &&', predicate: 'room > 0' } },
        ],
      },
    });
  });

  it('add_column with default, check, references, unique and a comment', async () => {
    expect(
      await operations(
        "ALTER TABLE orders ADD COLUMN status text DEFAULT 'new' CHECK (status IN ('new', 'paid')) UNIQUE;\n" +
          'ALTER TABLE orders ADD COLUMN user_id bigint CONSTRAINT orders_user_fk REFERENCES users (id);\n' +
          "COMMENT ON COLUMN orders.status IS 'lifecycle';",
      ),
    ).toEqual([
      {
        add_column: {
          table: 'orders',
          column: { name: 'status', type: 'text', default: "'new'", check: { name: 'orders_status_check', constraint: "status IN ('new', 'paid')" }, unique: true, nullable: true },
        },
      },
      { add_column: { table: 'orders', column: { name: 'user_id', type: 'bigint', references: { name: 'orders_user_fk', table: 'users', column: 'id' }, nullable: true } } },
      { alter_column: { table: 'orders', column: 'status', comment: 'lifecycle' } },
    ]);
  });

  it('add_column NOT NULL without a default gets a marked up', async () => {
    const sql = 'ALTER TABLE orders ADD COLUMN region text NOT NULL;';
    // A placeholder, not SQL: tandem start refuses the file until a person writes the value.
    expect(await operations(sql)).toEqual([
      { add_column: { table: 'orders', column: { name: 'region', type: 'text', nullable: false }, up: 'REVIEW: the value existing rows get for region' } },
    ]);
    expect(await notes(sql)).toEqual([expect.stringMatching(/^review: existing rows get the value of "up"/)]);
  });

  it('a placeholder left in the file is refused by everything that runs migrations, naming its line', async () => {
    const conversion = await convert('ALTER TABLE orders ADD COLUMN region text NOT NULL;\nALTER TABLE orders ADD COLUMN zone int NOT NULL;');
    const yaml = toYaml(conversion.migrations[0]!);
    const lineOf = (text: string) => yaml.split('\n').findIndex((l) => l.includes(text)) + 1;
    const line = lineOf('up: "REVIEW: the value existing rows get for region"');
    const second = lineOf('up: "REVIEW: the value existing rows get for zone"');
    expect(line).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(line);
    await expectError(
      () => parseMigration(yaml, { file: 'case.yaml', format: 'yaml' }),
      { kind: 'review_placeholder', value: 'REVIEW: the value existing rows get for region', line, more: 1, moreLines: [second] },
      { file: 'case.yaml', operation: 0, kind: 'add_column', field: 'up' },
    );
    // JSON output carries the same placeholder, and is refused the same way.
    const json = JSON.stringify(migrationDocument(conversion.migrations[0]!), null, 2);
    const jsonLine = json.split('\n').findIndex((l) => l.includes('"up": "REVIEW: the value existing rows get for region"')) + 1;
    await expectError(() => parseMigration(json, { file: 'case.json', format: 'json' }), { kind: 'review_placeholder', line: jsonLine });
    // Once a person writes the value, the file loads.
    const edited = yaml.replace('"REVIEW: the value existing rows get for region"', "'''eu'''").replace('"REVIEW: the value existing rows get for zone"', '"0"');
    expect(parseMigration(edited, { file: 'case.yaml', format: 'yaml' }).migration.operations).toHaveLength(2);
  });

  it('alter_column: type with and without USING, placeholders marked', async () => {
    expect(await operations('ALTER TABLE orders ALTER COLUMN total TYPE numeric(14,2);')).toEqual([
      { alter_column: { table: 'orders', column: 'total', type: 'numeric(14,2)', up: 'CAST(total AS numeric(14,2))', down: 'total' } },
    ]);
    expect(await operations("ALTER TABLE orders ALTER \"Qty\" SET DATA TYPE bigint USING nullif(\"Qty\", '')::bigint;")).toEqual([
      { alter_column: { table: 'orders', column: 'Qty', type: 'bigint', up: `nullif("Qty", '')::bigint`, down: '"Qty"' } },
    ]);
    const remarks = await notes('ALTER TABLE orders ALTER COLUMN total TYPE bigint;');
    expect(remarks).toHaveLength(2);
    expect(remarks.every((n) => n.startsWith('review: '))).toBe(true);
  });

  it('alter_column: nullability, defaults and comments', async () => {
    expect(
      await operations(
        "ALTER TABLE orders ALTER COLUMN note SET NOT NULL, ALTER COLUMN memo DROP NOT NULL, ALTER COLUMN status SET DEFAULT 'new', ALTER COLUMN paid DROP DEFAULT;\n" +
          'COMMENT ON COLUMN orders.note IS NULL;',
      ),
    ).toEqual([
      { alter_column: { table: 'orders', column: 'note', nullable: false, up: 'note' } },
      { alter_column: { table: 'orders', column: 'memo', nullable: true, down: 'memo' } },
      { alter_column: { table: 'orders', column: 'status', default: "'new'" } },
      { alter_column: { table: 'orders', column: 'paid', default: null } },
      { alter_column: { table: 'orders', column: 'note', comment: null } },
    ]);
  });

  it('rename_column, rename_table, rename_constraint', async () => {
    expect(
      await operations('ALTER TABLE users RENAME COLUMN email TO email_address;\nALTER TABLE users RENAME TO people;\nALTER TABLE people RENAME CONSTRAINT a_check TO b_check;'),
    ).toEqual([
      { rename_column: { table: 'users', from: 'email', to: 'email_address' } },
      { rename_table: { from: 'users', to: 'people' } },
      { rename_constraint: { table: 'people', from: 'a_check', to: 'b_check' } },
    ]);
  });

  it('drop_column, drop_table, drop_index (one operation per dropped object)', async () => {
    expect(await operations('ALTER TABLE users DROP COLUMN nickname;\nDROP TABLE IF EXISTS a, public.b CASCADE;\nDROP INDEX CONCURRENTLY users_email_idx;')).toEqual([
      { drop_column: { table: 'users', column: 'nickname' } },
      { drop_table: { name: 'a' } },
      { drop_table: { name: 'b' } },
      { drop_index: { name: 'users_email_idx' } },
    ]);
  });

  it('create_index with every option', async () => {
    const sql =
      'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_code_idx ON orders USING btree ' +
      '(code COLLATE "C" text_pattern_ops DESC NULLS LAST, region ASC NULLS FIRST) WITH (fillfactor = 70) WHERE code IS NOT NULL AND region <> \'\';';
    expect(await operations(sql)).toEqual([
      {
        create_index: {
          name: 'orders_code_idx',
          table: 'orders',
          unique: true,
          columns: [
            { column: 'code', collate: 'C', opclass: { name: 'text_pattern_ops' }, sort: 'DESC', nulls: 'LAST' },
            { column: 'region', sort: 'ASC', nulls: 'FIRST' },
          ],
          storage_parameters: 'fillfactor = 70',
          predicate: "code IS NOT NULL AND region <> ''",
        },
      },
    ]);
    expect(await operations('CREATE INDEX ON orders USING gin (tags);')).toEqual([
      { create_index: { name: 'orders_tags_idx', table: 'orders', method: 'gin', columns: [{ column: 'tags' }] } },
    ]);
    expect(await operations('CREATE INDEX t_sig ON docs USING gist (body gist_trgm_ops (siglen = 32));')).toEqual([
      { create_index: { name: 't_sig', table: 'docs', method: 'gist', columns: [{ column: 'body', opclass: { name: 'gist_trgm_ops', params: ['siglen=32'] } }] } },
    ]);
  });

  it('create_constraint for check, unique, foreign key and primary key; drop_constraint', async () => {
    expect(
      await operations(
        [
          'ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total > 0 AND tax >= 0) NOT VALID;',
          'ALTER TABLE orders ADD UNIQUE (code, region);',
          'ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;',
          'ALTER TABLE items ADD PRIMARY KEY (id);',
          'ALTER TABLE orders DROP CONSTRAINT IF EXISTS old_check;',
        ].join('\n'),
      ),
    ).toEqual([
      { create_constraint: { table: 'orders', name: 'total_positive', type: 'check', columns: ['total', 'tax'], check: 'total > 0 AND tax >= 0', up: { total: 'total', tax: 'tax' }, down: { total: 'total', tax: 'tax' } } },
      { create_constraint: { table: 'orders', name: 'orders_code_region_key', type: 'unique', columns: ['code', 'region'], up: { code: 'code', region: 'region' }, down: { code: 'code', region: 'region' } } },
      {
        create_constraint: {
          table: 'orders',
          name: 'orders_user_fk',
          type: 'foreign_key',
          columns: ['user_id'],
          references: { table: 'users', columns: ['id'], on_delete: 'CASCADE' },
          up: { user_id: 'user_id' },
          down: { user_id: 'user_id' },
        },
      },
      { create_constraint: { table: 'items', name: 'items_pkey', type: 'primary_key', columns: ['id'], up: { id: 'id' }, down: { id: 'id' } } },
      { drop_constraint: { table: 'orders', name: 'old_check' } },
    ]);
  });

  it('set_replica_identity', async () => {
    expect(await operations('ALTER TABLE orders REPLICA IDENTITY FULL;\nALTER TABLE orders REPLICA IDENTITY USING INDEX orders_pkey;')).toEqual([
      { set_replica_identity: { table: 'orders', identity: { type: 'full' } } },
      { set_replica_identity: { table: 'orders', identity: { type: 'index', index: 'orders_pkey' } } },
    ]);
  });
});

describe('convert: statements without a safe equivalent', () => {
  it('become sql operations that say why', async () => {
    const sql = [
      "CREATE TYPE mood AS ENUM ('sad', 'ok');",
      'CREATE INDEX orders_lower_email ON orders (lower(email));',
      'ALTER TABLE orders ADD COLUMN a int, CLUSTER ON orders_pkey;',
      "UPDATE orders SET status = 'new' WHERE status IS NULL;",
      'CREATE TABLE other.things (id bigint);',
      'ALTER TABLE orders ADD CONSTRAINT o_fk FOREIGN KEY (user_id) REFERENCES users;',
    ].join('\n');
    const conversion = await convert(sql);
    // Raw SQL must run alone: consecutive raw statements share one sql operation, and the file
    // becomes consecutive migrations around each.
    expect(conversion.migrations.map((m) => [m.name, m.operations.map((op) => op.kind)])).toEqual([
      ['case_1', ['sql']],
      ['case_2', ['add_column']],
      ['case_3', ['sql']],
    ]);
    expect(allOperations(conversion)).toEqual([
      { sql: { up: "CREATE TYPE mood AS ENUM ('sad', 'ok');\nCREATE INDEX orders_lower_email ON orders (lower(email))" } },
      { add_column: { table: 'orders', column: { name: 'a', type: 'integer', nullable: true } } },
      {
        sql: {
          up: [
            'ALTER TABLE orders CLUSTER ON orders_pkey',
            "UPDATE orders SET status = 'new' WHERE status IS NULL",
            'CREATE TABLE other.things (id bigint)',
            'ALTER TABLE orders ADD CONSTRAINT o_fk FOREIGN KEY (user_id) REFERENCES users',
          ].join(';\n'),
        },
      },
    ]);
    const reasons = conversion.migrations.flatMap((m) => m.operations).filter((op) => op.kind === 'sql').map((op) => op.notes.map((note) => note.text));
    expect(reasons).toEqual([
      [expect.stringContaining('no operation for CREATE TYPE;'), expect.stringContaining('expression indexes')],
      [
        expect.stringContaining('CLUSTER ON has no tandem operation'),
        expect.stringContaining('in batches'),
        expect.stringContaining('outside the migrated schema "public"'),
        expect.stringContaining("cannot look up users's primary key"),
      ],
    ]);
  });

  it('keeps CREATE INDEX CONCURRENTLY in a sql operation of its own, as it cannot run in a transaction', async () => {
    const conversion = await convert(
      "CREATE TYPE mood AS ENUM ('sad');\nCREATE INDEX CONCURRENTLY orders_lower ON orders (lower(email));\nCREATE TYPE size AS ENUM ('s');",
    );
    expect(allOperations(conversion)).toEqual([
      { sql: { up: "CREATE TYPE mood AS ENUM ('sad')" } },
      { sql: { up: 'CREATE INDEX CONCURRENTLY orders_lower ON orders (lower(email))' } },
      { sql: { up: "CREATE TYPE size AS ENUM ('s')" } },
    ]);
  });

  it('sets a shorter version_schema when <schema>_<name> would pass 63 bytes, and says so', async () => {
    const name = '20240229123456_add_the_delivery_region_to_every_order_of_the_shop';
    const conversion = await convertSql('ALTER TABLE orders ADD COLUMN region text;', 'migration.sql', { name, schema: 'public' });
    const [migration] = conversion.migrations;
    expect(migration!.name).toBe(name);
    // pgroll's naming: the schema is put in front of version_schema, and the whole fits in 63 bytes.
    expect(migration!.versionSchema).toMatch(/^20240229123456_add_the_delivery_region_to_every_[0-9a-f]{8}$/);
    expect(Buffer.byteLength(`public_${migration!.versionSchema!}`)).toBeLessThanOrEqual(63);
    expect(migrationDocument(migration!).version_schema).toBe(migration!.versionSchema);
    expect(conversionHeader(conversion, 'migration.sql').join('\n')).toContain(`version_schema is ${migration!.versionSchema}`);
    // Short names keep the version schema tandem derives.
    expect((await convert('ALTER TABLE orders ADD COLUMN region text;')).migrations[0]!.versionSchema).toBeUndefined();
  });

  it('drops no constraint of a table the file drops, and treats DROP + ADD of one constraint as one change', async () => {
    const conversion = await convert(
      [
        'ALTER TABLE "Banner" DROP CONSTRAINT "Banner_userId_fkey";',
        'DROP TABLE "Banner";',
        'ALTER TABLE "Doc" DROP CONSTRAINT "Doc_userId_fkey";',
        'ALTER TABLE "Doc" ADD CONSTRAINT "Doc_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id") ON DELETE CASCADE;',
      ].join('\n'),
    );
    expect(conversion.migrations).toHaveLength(1);
    expect(conversion.migrations[0]!.operations.map((op) => op.kind)).toEqual(['drop_table', 'drop_constraint', 'create_constraint']);
    expect(conversion.migrations[0]!.operations[2]!.notes).toEqual([{ level: 'info', text: 'replaces the constraint Doc_userId_fkey dropped above, in the same migration' }]);
  });

  it("converts the statement inside Drizzle's duplicate_object guard", async () => {
    const sql = `DO $$ BEGIN
 ALTER TABLE "Vote" ADD CONSTRAINT "Vote_chatId_Chat_id_fk" FOREIGN KEY ("chatId") REFERENCES "public"."Chat"("id") ON DELETE no action ON UPDATE no action;
EXCEPTION
 WHEN duplicate_object THEN null;
END $$;
DO $$ BEGIN PERFORM 1; PERFORM 2; EXCEPTION WHEN duplicate_object THEN null; END $$;`;
    const conversion = await convert(sql);
    expect(conversion.migrations.map((m) => m.operations.map((op) => op.kind))).toEqual([['create_constraint'], ['sql']]);
    expect(allOperations(conversion)[0]).toMatchObject({
      create_constraint: { table: 'Vote', name: 'Vote_chatId_Chat_id_fk', type: 'foreign_key', columns: ['chatId'], references: { table: 'Chat', columns: ['id'] } },
    });
    expect(conversion.migrations[0]!.operations[0]!.notes.map((n) => n.text)).toContain(
      'the DO block that ignored duplicate_object is dropped: tandem refuses to create what already exists',
    );
  });

  it('honours --schema for qualified names', async () => {
    expect(await operations('CREATE TABLE app.t (id bigint PRIMARY KEY);', 'app')).toEqual([
      { create_table: { name: 't', columns: [{ name: 'id', type: 'bigint', pk: true, nullable: false }] } },
    ]);
  });

  it('skips transaction control and lock_timeout, saying so once', async () => {
    const conversion = await convert("BEGIN;\nSET lock_timeout = '1s';\nALTER TABLE t DROP COLUMN a;\nCOMMIT;");
    expect(allOperations(conversion)).toEqual([{ drop_column: { table: 't', column: 'a' } }]);
    expect(conversion.skipped).toHaveLength(2);
  });

  it('refuses a file with nothing to convert and reports syntax errors with their position', async () => {
    await expectError(convertSql('BEGIN; COMMIT;', 'empty.sql', { name: 'x', schema: 'public' }), { kind: 'convert_empty', source: 'file' }, { file: 'empty.sql' });
    await expectError(convertSql('ALTER TABLE;', 'bad.sql', { name: 'x', schema: 'public' }), {
      kind: 'sql_syntax',
      reason: 'syntax error at or near ";"',
      position: { line: 1, column: 12 },
    });
  });
});

describe('convert: output', () => {
  it('YAML carries the notes as comments above their operation', async () => {
    const conversion = await convert('ALTER TABLE orders ALTER COLUMN total TYPE bigint;\nDROP INDEX i;');
    const text = renderConversion(conversion, 'yaml', 'case.sql');
    expect(text).toMatch(/^# Converted by tandem convert from case\.sql\.\n# 2 REVIEW notes below/);
    expect(text).toContain('operations:\n  # REVIEW: "up" converts existing values');
    expect(YAML.parse(text)).toEqual(migrationDocument(conversion.migrations[0]!));
  });

  it('several migrations become a YAML stream or a JSON array', async () => {
    const conversion = await convert('DROP INDEX a;\nCREATE EXTENSION pgcrypto;');
    const yaml = renderConversion(conversion, 'yaml', 'case.sql');
    expect(yaml).toContain('# The SQL needs 2 migrations, to run in order (case_1, case_2)');
    expect(YAML.parseAllDocuments(yaml).map((d) => d.toJS())).toEqual(conversion.migrations.map(migrationDocument));
    expect(JSON.parse(renderConversion(conversion, 'json', 'case.sql'))).toEqual(conversion.migrations.map(migrationDocument));
  });
});
