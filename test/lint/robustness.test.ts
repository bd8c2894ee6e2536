/**
 * A wide spread of real-world statements: neither lint nor convert may throw anything but a
 * TandemError on them, and every converted migration must validate.
 */
import { describe, expect, it } from 'vitest';
import { convertSql, migrationDocument } from '../../src/convert/convert.js';
import { lintSql } from '../../src/lint/lint.js';
import { parseMigration } from '../../src/migration/load.js';

const STATEMENTS = [
  `CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END; $$`,
  `CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch()`,
  `DO $$ BEGIN RAISE NOTICE 'hi; there'; END $$`,
  `CREATE TABLE measurements (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at)`,
  `CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`,
  `ALTER TABLE measurements ATTACH PARTITION m_old FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')`,
  `ALTER TABLE measurements DETACH PARTITION m_old CONCURRENTLY`,
  `CREATE MATERIALIZED VIEW stats AS SELECT count(*) FROM users`,
  `REFRESH MATERIALIZED VIEW CONCURRENTLY stats`,
  `GRANT SELECT ON users TO reporting`,
  `ALTER TABLE users SET (fillfactor = 80), ALTER COLUMN email SET STATISTICS 500`,
  `ALTER TABLE users ENABLE ROW LEVEL SECURITY`,
  `CREATE POLICY own_rows ON users USING (id = current_setting('app.user')::bigint)`,
  `ALTER SEQUENCE users_id_seq RESTART WITH 1000`,
  `TRUNCATE audit_log RESTART IDENTITY CASCADE`,
  `DELETE FROM sessions WHERE expires_at < now()`,
  `INSERT INTO archive SELECT * FROM orders WHERE created_at < now() - interval '1 year'`,
  `CREATE SCHEMA IF NOT EXISTS reporting`,
  `ALTER TABLE users ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY, ALTER COLUMN x DROP IDENTITY IF EXISTS`,
  `ALTER TABLE users OWNER TO app`,
  `ALTER TABLE users SET SCHEMA archive`,
  `CREATE INDEX users_lower ON users ((lower(email))) INCLUDE (id)`,
  `CREATE TABLE users_copy (LIKE users INCLUDING ALL)`,
  `CREATE TABLE recent AS SELECT * FROM orders WHERE created_at > now() - interval '7 days'`,
  `CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v jsonb)`,
  `CREATE TEMP TABLE scratch (a int)`,
  `CREATE TABLE durations (a interval day to second(3), b interval(2), c interval year, d time(3) with time zone, e bit varying(8), f double precision, g "char", h character varying(5)[], i numeric)`,
  `CREATE TABLE "Quoted Table" ("Weird ""col""" text COLLATE "C", "select" int DEFAULT 1)`,
  `CREATE TABLE ünïcödé (naïve text DEFAULT 'é😀')`,
  `CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%')`,
  `ALTER DOMAIN email ADD CONSTRAINT has_dot CHECK (VALUE LIKE '%.%') NOT VALID`,
  `CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public`,
  `COMMENT ON INDEX users_email_idx IS 'for login'`,
  `ALTER INDEX users_email_idx RENAME TO users_login_idx`,
  `ALTER TABLE users ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&)`,
  `ALTER TABLE users ALTER CONSTRAINT users_team_fk DEFERRABLE`,
  `ALTER TABLE users ADD COLUMN v text GENERATED ALWAYS AS (lower(email)) VIRTUAL`,
  `ALTER TABLE ONLY users ADD COLUMN flags int[] DEFAULT ARRAY[]::int[] NOT NULL`,
  `ALTER TABLE IF EXISTS users DROP CONSTRAINT IF EXISTS x, ADD CONSTRAINT y UNIQUE (a) DEFERRABLE INITIALLY DEFERRED`,
  `CREATE TABLE t1 (a int, b int, FOREIGN KEY (a, b) REFERENCES t2 ON DELETE SET NULL (a))`,
  `CREATE TABLE t3 (id int PRIMARY KEY DEFERRABLE, x int CONSTRAINT x_key UNIQUE, y int CONSTRAINT y_pk PRIMARY KEY)`,
  `CREATE INDEX ON ONLY measurements (at)`,
  `CREATE INDEX brin_at ON measurements USING brin (at) WITH (pages_per_range = 32)`,
  `CREATE INDEX bloomy ON t USING bloom (a)`,
  `ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'`,
  `ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok'`,
  `VACUUM`,
  `CLUSTER`,
  `REINDEX DATABASE app`,
  `SET search_path TO app, public`,
  `RESET lock_timeout`,
  `SELECT pg_sleep(1)`,
  `PREPARE TRANSACTION 'x'`,
  `SAVEPOINT s1`,
  `COPY users (id) FROM STDIN`,
  `LOCK users, orders IN SHARE ROW EXCLUSIVE MODE NOWAIT`,
  `CREATE VIEW v AS SELECT 1 AS one WITH CHECK OPTION`,
  `DROP VIEW IF EXISTS v`,
  `DROP TABLE IF EXISTS other.t`,
  `DROP TYPE IF EXISTS mood CASCADE`,
  `ALTER TABLE users RENAME CONSTRAINT a TO b`,
  `ALTER TABLE app.users RENAME COLUMN a TO b`,
  `COMMENT ON COLUMN app.users.email IS 'x'`,
];

describe('robustness', () => {
  it('lints every statement without throwing', async () => {
    for (const pgVersion of [10, 14]) {
      for (const assumeInTransaction of [false, true]) {
        const findings = await lintSql(STATEMENTS.join(';\n') + ';', 'many.sql', { pgVersion, assumeInTransaction, disabled: new Set() });
        expect(findings.filter((f) => f.rule === 'syntax-error')).toEqual([]);
      }
    }
  });

  it('converts every statement, one by one and all together, into valid migrations', async () => {
    for (const sql of [...STATEMENTS, STATEMENTS.join(';\n')]) {
      const conversion = await convertSql(sql, 'one.sql', { name: 'm', schema: 'public' }).catch((error: unknown) => {
        // Transaction control and lock_timeout alone convert to nothing, and say so.
        if ((error as { code?: string }).code === 'convert_empty') return { migrations: [] };
        throw error;
      });
      for (const migration of conversion.migrations) {
        expect(() => parseMigration(JSON.stringify(migrationDocument(migration)), { file: 'm.json', format: 'json' }), sql).not.toThrow();
      }
    }
  });
});
