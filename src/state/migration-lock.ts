/**
 * The migration lock: one tandem process at a time migrates a schema. It is a session advisory lock,
 * tried without waiting, so a second `start` fails at once and says who is at it; the server
 * releases it when the session ends, even on kill -9. `tandem status` reads its holder to tell a
 * live run from an interrupted one.
 */
import type { Queryable } from '../db/connection.js';
import { TandemError } from '../errors/index.js';
import { ADVISORY_LOCK_CLASS } from './schema.js';

/** The key (within ADVISORY_LOCK_CLASS, hashed by hashtext) of the lock one migrating process holds per schema. */
export function migrationLockKey(stateSchema: string, schema: string): string {
  return `${stateSchema}.${schema}`;
}

/** The server session holding the migration lock of `schema`: a running tandem, or none. */
export interface MigrationLockHolder {
  pid: number;
  /** Application name and client address. */
  who: string;
  state: string | null;
  /** When its current query (or, idle, its session) began. */
  since: string | null;
  query: string | null;
}

export async function readMigrationLockHolder(db: Queryable, stateSchema: string, schema: string): Promise<MigrationLockHolder | undefined> {
  const { rows } = await db.query<MigrationLockHolder>(
    `SELECT a.pid, coalesce(nullif(a.application_name, ''), 'unknown') || ' from ' || coalesce(host(a.client_addr) || ':' || a.client_port, 'local socket') AS who,
            a.state, to_char(coalesce(a.query_start, a.backend_start), 'YYYY-MM-DD HH24:MI:SS TZ') AS since, left(a.query, 80) AS query
       FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.classid = $1::int::oid AND l.objid = pg_catalog.hashtext($2)::oid AND l.granted`,
    [ADVISORY_LOCK_CLASS, migrationLockKey(stateSchema, schema)],
  );
  return rows[0];
}

/** Takes the schema's migration lock without waiting, or says who holds it. */
export async function takeMigrationLock(db: Queryable, stateSchema: string, schema: string): Promise<void> {
  const { rows } = await db.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [ADVISORY_LOCK_CLASS, migrationLockKey(stateSchema, schema)]);
  if (rows[0]!.ok) return;
  const holder = await readMigrationLockHolder(db, stateSchema, schema);
  throw new TandemError({ kind: 'busy', schema, holder: holder ?? undefined });
}

/** Gives the lock back; a session that is gone has given it back already, so failing here is no error. */
export async function releaseMigrationLock(db: Queryable, stateSchema: string, schema: string): Promise<void> {
  await db.query('SELECT pg_advisory_unlock($1, hashtext($2))', [ADVISORY_LOCK_CLASS, migrationLockKey(stateSchema, schema)]).catch(() => {});
}

/**
 * Runs `body` in one transaction while holding the schema's migration lock: for the commands that
 * write history without running a plan (tandem init --from-pgroll, tandem baseline).
 */
export async function underMigrationLock<T>(db: Queryable, stateSchema: string, schema: string, body: () => Promise<T>): Promise<T> {
  await takeMigrationLock(db, stateSchema, schema);
  try {
    await db.query('BEGIN');
    try {
      const result = await body();
      await db.query('COMMIT');
      return result;
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {});
      throw error;
    }
  } finally {
    await releaseMigrationLock(db, stateSchema, schema);
  }
}
