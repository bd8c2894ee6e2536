/**
 * The lint corpus: SQL a team might really write, with the exact findings expected. Every rule has
 * true positives here and the safe spelling of the same change, which must stay clean. Findings are
 * written `rule@line:column`; `lock_timeout` is set first unless a case is about it.
 */
import { describe, expect, it } from 'vitest';
import { lintSql } from '../../src/lint/lint.js';
import type { LintOptions } from '../../src/lint/types.js';

interface Case {
  sql: string;
  findings: string[];
  options?: Partial<LintOptions>;
  /** Leave out the SET lock_timeout preamble. */
  raw?: boolean;
}

const PREAMBLE = "SET lock_timeout = '2s';\n";

const CORPUS: Record<string, Case> = {
  // adding-required-column
  'NOT NULL column without default': { sql: 'ALTER TABLE users ADD COLUMN plan text NOT NULL;', findings: ['adding-required-column@2:19'] },
  'NOT NULL column with a constant default': { sql: "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';", findings: [] },
  'nullable column': { sql: 'ALTER TABLE users ADD COLUMN bio text;', findings: [] },
  'NOT NULL column on a table created in the file': {
    sql: 'CREATE TABLE notes (id bigint PRIMARY KEY);\nALTER TABLE notes ADD COLUMN body text NOT NULL;',
    findings: [],
  },
  'second subcommand is located': {
    sql: 'ALTER TABLE users ADD COLUMN a text,\n  ADD COLUMN b text NOT NULL;',
    findings: ['adding-required-column@3:3'],
  },
  // adding-column-with-volatile-default
  'volatile default': { sql: 'ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();', findings: ['adding-column-with-volatile-default@2:42'] },
  'clock_timestamp default': { sql: 'ALTER TABLE orders ADD COLUMN seen timestamptz DEFAULT clock_timestamp();', findings: ['adding-column-with-volatile-default@2:48'] },
  'now() is stable': { sql: 'ALTER TABLE orders ADD COLUMN seen timestamptz DEFAULT now();', findings: [] },
  'user function may be volatile': { sql: 'ALTER TABLE orders ADD COLUMN code text DEFAULT make_code();', findings: ['adding-column-with-volatile-default@2:41'] },
  'constant default before PostgreSQL 11': {
    sql: "ALTER TABLE orders ADD COLUMN status text DEFAULT 'new';",
    findings: ['adding-column-with-volatile-default@2:43'],
    options: { pgVersion: 10 },
  },
  'constant default on PostgreSQL 11': { sql: "ALTER TABLE orders ADD COLUMN status text DEFAULT 'new';", findings: [], options: { pgVersion: 11 } },
  // adding-serial-column
  'serial column': { sql: 'ALTER TABLE events ADD COLUMN seq bigserial;', findings: ['adding-serial-column@2:20'] },
  'identity column': { sql: 'ALTER TABLE events ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;', findings: ['adding-serial-column@2:20'] },
  'stored generated column': {
    sql: 'ALTER TABLE events ADD COLUMN total numeric GENERATED ALWAYS AS (price * qty) STORED;',
    findings: ['adding-serial-column@2:20'],
  },
  'plain bigint column': { sql: 'ALTER TABLE events ADD COLUMN seq bigint;', findings: [] },
  // changing-column-type
  'type change': { sql: 'ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(20,2);', findings: ['changing-column-type@2:22'] },
  'type change with USING': { sql: 'ALTER TABLE accounts ALTER balance SET DATA TYPE bigint USING balance::bigint;', findings: ['changing-column-type@2:22'] },
  'type change on a new table': { sql: 'CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a TYPE bigint;', findings: [] },
  // dropping-column
  'drop column': { sql: 'ALTER TABLE users DROP COLUMN nickname;', findings: ['dropping-column@2:19'] },
  'drop column if exists cascade': { sql: 'ALTER TABLE users DROP COLUMN IF EXISTS nickname CASCADE;', findings: ['dropping-column@2:19'] },
  // renaming-column
  'rename column': { sql: 'ALTER TABLE users RENAME COLUMN email TO email_address;', findings: ['renaming-column@2:13'] },
  'rename column of a new table': { sql: 'CREATE TABLE t (a text);\nALTER TABLE t RENAME COLUMN a TO b;', findings: [] },
  // set-not-null-without-check
  'set not null': { sql: 'ALTER TABLE users ALTER COLUMN email SET NOT NULL;', findings: ['set-not-null-without-check@2:19'] },
  'set not null after a validated check': {
    sql: [
      'ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;',
      'ALTER TABLE users VALIDATE CONSTRAINT email_nn;',
      'ALTER TABLE users ALTER COLUMN email SET NOT NULL;',
    ].join('\n'),
    findings: [],
  },
  'set not null after an unvalidated check': {
    sql: ['ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;', 'ALTER TABLE users ALTER COLUMN email SET NOT NULL;'].join('\n'),
    findings: ['set-not-null-without-check@3:19'],
  },
  'set not null with a check before PostgreSQL 12': {
    sql: [
      'ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;',
      'ALTER TABLE users VALIDATE CONSTRAINT email_nn;',
      'ALTER TABLE users ALTER COLUMN email SET NOT NULL;',
    ].join('\n'),
    findings: ['set-not-null-without-check@4:19'],
    options: { pgVersion: 11 },
  },
  // constraint-without-not-valid
  'foreign key without NOT VALID': {
    sql: 'ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);',
    findings: ['constraint-without-not-valid@2:20'],
  },
  'check without NOT VALID': { sql: 'ALTER TABLE orders ADD CHECK (total >= 0);', findings: ['constraint-without-not-valid@2:20'] },
  'foreign key NOT VALID then validated': {
    sql: [
      'ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;',
      'ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;',
    ].join('\n'),
    findings: [],
  },
  'check NOT VALID': { sql: 'ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total >= 0) NOT VALID;', findings: [] },
  // adding-primary-key-without-index
  'add primary key': { sql: 'ALTER TABLE items ADD PRIMARY KEY (id);', findings: ['adding-primary-key-without-index@2:19'] },
  'add primary key using index': {
    sql: ['CREATE UNIQUE INDEX CONCURRENTLY items_pkey ON items (id);', 'ALTER TABLE items ADD CONSTRAINT items_pkey PRIMARY KEY USING INDEX items_pkey;'].join('\n'),
    findings: [],
  },
  'primary key column added': {
    sql: 'ALTER TABLE items ADD COLUMN id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY;',
    findings: ['adding-primary-key-without-index@2:73', 'adding-serial-column@2:19'],
  },
  // adding-unique-without-index
  'add unique': { sql: 'ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);', findings: ['adding-unique-without-index@2:19'] },
  'add unique using index': { sql: 'ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;', findings: [] },
  'unique on a new table': { sql: 'CREATE TABLE t (a text);\nALTER TABLE t ADD UNIQUE (a);', findings: [] },
  // create-index-without-concurrently
  'create index': { sql: 'CREATE INDEX orders_created_at_idx ON orders (created_at);', findings: ['create-index-without-concurrently@2:1'] },
  'create unique index, no name': { sql: 'CREATE UNIQUE INDEX ON orders (code);', findings: ['create-index-without-concurrently@2:1'] },
  'create index concurrently': { sql: 'CREATE INDEX CONCURRENTLY orders_created_at_idx ON orders (created_at);', findings: [] },
  'create index on a new table': { sql: 'CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);', findings: [] },
  // drop-index-without-concurrently
  'drop index': { sql: 'DROP INDEX orders_created_at_idx;', findings: ['drop-index-without-concurrently@2:1'] },
  'drop index concurrently': { sql: 'DROP INDEX CONCURRENTLY IF EXISTS orders_created_at_idx;', findings: [] },
  'drop index of a new table': { sql: 'CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);\nDROP INDEX t_a;', findings: [] },
  // reindex-without-concurrently
  'reindex': { sql: 'REINDEX TABLE orders;', findings: ['reindex-without-concurrently@2:1'] },
  'reindex concurrently': { sql: 'REINDEX INDEX CONCURRENTLY orders_pkey;', findings: [] },
  // concurrently-in-transaction
  'concurrent index in a transaction': {
    sql: 'BEGIN;\nCREATE INDEX CONCURRENTLY i ON orders (a);\nCOMMIT;',
    findings: ['concurrently-in-transaction@3:1'],
  },
  'concurrent drop with --assume-in-transaction': {
    sql: 'DROP INDEX CONCURRENTLY i;',
    findings: ['concurrently-in-transaction@2:1'],
    options: { assumeInTransaction: true },
  },
  'concurrent index after COMMIT': { sql: 'BEGIN;\nALTER TABLE orders ADD COLUMN a int;\nCOMMIT;\nCREATE INDEX CONCURRENTLY i ON orders (a);', findings: [] },
  // renaming-table
  'rename table': { sql: 'ALTER TABLE customers RENAME TO clients;', findings: ['renaming-table@2:1'] },
  'rename a new table': { sql: 'CREATE TABLE draft (a int);\nALTER TABLE draft RENAME TO final;\nCREATE INDEX ON final (a);', findings: [] },
  // dropping-table
  'drop table': { sql: 'DROP TABLE legacy_sessions;', findings: ['dropping-table@2:1'] },
  'drop two tables, one new': { sql: 'CREATE TABLE tmp (a int);\nDROP TABLE tmp, old_stuff;', findings: ['dropping-table@3:1'] },
  // vacuum-full, cluster, lock-table
  'vacuum full': { sql: 'VACUUM FULL orders;', findings: ['vacuum-full@2:1'] },
  'plain vacuum': { sql: 'VACUUM (ANALYZE) orders;', findings: [] },
  'cluster': { sql: 'CLUSTER orders USING orders_created_at_idx;', findings: ['cluster@2:1'] },
  'lock table': { sql: 'LOCK TABLE orders;', findings: ['lock-table@2:1'] },
  'lock table in share update exclusive mode': { sql: 'LOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE;', findings: [] },
  // missing-lock-timeout
  'no lock_timeout': { sql: 'ALTER TABLE users ADD COLUMN bio text;\nALTER TABLE users ADD COLUMN age int;', findings: ['missing-lock-timeout@1:1'], raw: true },
  'lock_timeout set to 0': { sql: 'SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN bio text;', findings: ['missing-lock-timeout@2:1'], raw: true },
  'lock_timeout set locally': { sql: "BEGIN;\nSET LOCAL lock_timeout = '1s';\nALTER TABLE users ADD COLUMN bio text;\nCOMMIT;", findings: [], raw: true },
  'SET LOCAL lock_timeout ends with its transaction': {
    sql: "BEGIN;\nSET LOCAL lock_timeout = '1s';\nCOMMIT;\nALTER TABLE users ADD COLUMN bio text;",
    findings: ['missing-lock-timeout@4:1'],
    raw: true,
  },
  'only new tables': { sql: 'CREATE TABLE t (a bigint PRIMARY KEY);\nCREATE INDEX t_a ON t (a);\nDROP INDEX t_a;', findings: [], raw: true },
  'foreign key to an existing table locks it': {
    sql: 'CREATE TABLE t (user_id bigint REFERENCES users (id));',
    findings: ['missing-lock-timeout@1:1'],
    raw: true,
  },
  'a foreign key added to a new table locks the table it references (Prisma writes keys this way)': {
    sql: 'CREATE TABLE "Banner" (id bigint PRIMARY KEY, "userId" bigint);\nALTER TABLE "Banner" ADD CONSTRAINT "Banner_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id");',
    findings: ['missing-lock-timeout@2:1'],
    raw: true,
  },
  'a column with a foreign key added to a new table': {
    sql: 'CREATE TABLE t (id bigint PRIMARY KEY);\nALTER TABLE t ADD COLUMN user_id bigint REFERENCES users (id);',
    findings: ['missing-lock-timeout@2:1'],
    raw: true,
  },
  // backfill-in-ddl-transaction
  'DDL then backfill in one transaction': {
    sql: "BEGIN;\nALTER TABLE users ADD COLUMN full_name text;\nUPDATE users SET full_name = first_name || ' ' || last_name;\nCOMMIT;",
    findings: ['backfill-in-ddl-transaction@4:1', 'unbatched-data-change@4:8'],
  },
  'backfill then DDL, whole file in a transaction': {
    sql: "UPDATE users SET plan = 'free' WHERE plan IS NULL;\nALTER TABLE users ALTER COLUMN plan SET DEFAULT 'free';",
    findings: ['unbatched-data-change@2:8', 'backfill-in-ddl-transaction@3:1'],
    options: { assumeInTransaction: true },
  },
  'DDL committed before the backfill': {
    sql: "BEGIN;\nALTER TABLE users ADD COLUMN full_name text;\nCOMMIT;\nUPDATE users SET full_name = first_name;",
    findings: ['unbatched-data-change@5:8'],
  },
  // unbatched-data-change
  'a DELETE of an existing table': { sql: 'DELETE FROM sessions WHERE expires_at < now();', findings: ['unbatched-data-change@2:13'] },
  'an UPDATE in batches, by a subquery with LIMIT or a key range': {
    sql: [
      'UPDATE users SET plan = 1 WHERE id IN (SELECT id FROM users WHERE plan IS NULL ORDER BY id LIMIT 5000);',
      'DELETE FROM sessions WHERE id BETWEEN 1 AND 5000;',
    ].join('\n'),
    findings: [],
  },
  'data written into a table created in the same file': {
    sql: "CREATE TABLE plans (id bigint PRIMARY KEY, name text);\nINSERT INTO plans VALUES (1, 'free');\nUPDATE plans SET name = 'Free';",
    findings: [],
  },
  // add-enum-value-in-transaction
  'enum value in a transaction on PostgreSQL 11': {
    sql: "BEGIN;\nALTER TYPE order_status ADD VALUE 'refunded';\nCOMMIT;",
    findings: ['add-enum-value-in-transaction@3:1'],
    options: { pgVersion: 11 },
  },
  'enum value in a transaction on PostgreSQL 12': { sql: "BEGIN;\nALTER TYPE order_status ADD VALUE 'refunded';\nCOMMIT;", findings: [], options: { pgVersion: 12 } },
  'enum value outside a transaction on PostgreSQL 11': { sql: "ALTER TYPE order_status ADD VALUE 'refunded';", findings: [], options: { pgVersion: 11 } },
  // prefer-bigint-primary-key, prefer-text, prefer-timestamptz
  'serial primary key': { sql: 'CREATE TABLE invoices (id serial PRIMARY KEY, total numeric);', findings: ['prefer-bigint-primary-key@2:27'] },
  'integer primary key as a table constraint': {
    sql: 'CREATE TABLE invoices (id integer, total numeric, PRIMARY KEY (id));',
    findings: ['prefer-bigint-primary-key@2:27'],
  },
  'bigint identity primary key': { sql: 'CREATE TABLE invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);', findings: [] },
  'integer column that is not a key': { sql: 'CREATE TABLE invoices (id bigint PRIMARY KEY, quantity integer);', findings: [] },
  'varchar(n) column': { sql: 'CREATE TABLE products (id bigint PRIMARY KEY, sku varchar(32));', findings: ['prefer-text@2:51'] },
  'char(n) column added': { sql: 'ALTER TABLE products ADD COLUMN code char(3);', findings: ['prefer-text@2:38'] },
  'varchar without a length and text': { sql: 'CREATE TABLE products (id bigint PRIMARY KEY, a varchar, b text);', findings: [] },
  'timestamp column': { sql: 'CREATE TABLE events (id bigint PRIMARY KEY, at timestamp(3));', findings: ['prefer-timestamptz@2:48'] },
  'timestamptz column': { sql: 'CREATE TABLE events (id bigint PRIMARY KEY, at timestamp with time zone, b timestamptz);', findings: [] },
  // Statements no rule is about
  'plain DML and DDL that is safe': {
    sql: [
      "INSERT INTO settings (key, value) VALUES ('a', 'b');",
      'CREATE SEQUENCE invoice_numbers;',
      "COMMENT ON TABLE users IS 'people';",
      'CREATE VIEW active_users AS SELECT * FROM users WHERE active;',
      "CREATE TYPE mood AS ENUM ('sad', 'ok');",
      'CREATE EXTENSION IF NOT EXISTS pgcrypto;',
    ].join('\n'),
    findings: [],
  },
};

function format(findings: { rule: string; line: number; column: number }[]): string[] {
  return findings.map((f) => `${f.rule}@${f.line}:${f.column}`).sort();
}

describe('lint corpus', () => {
  it('has at least 60 statements', () => {
    const statements = Object.values(CORPUS).reduce((sum, c) => sum + c.sql.split(';').filter((s) => s.trim()).length, 0);
    expect(statements).toBeGreaterThanOrEqual(60);
  });

  for (const [name, testCase] of Object.entries(CORPUS)) {
    it(name, async () => {
      const sql = testCase.raw ? testCase.sql : PREAMBLE + testCase.sql;
      const options: LintOptions = { pgVersion: 14, assumeInTransaction: false, disabled: new Set(), ...testCase.options };
      expect(format(await lintSql(sql, 'case.sql', options))).toEqual([...testCase.findings].sort());
    });
  }
});
