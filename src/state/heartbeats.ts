/**
 * Proxy heartbeats in `<state>.proxies`: each running proxy rewrites its own row every few seconds
 * with its clients per version; `tandem status` and `tandem complete` read them back with
 * `readLiveClients`. Freshness is judged with the database's clock (`now()`), never the reader's or
 * the proxies', so clock skew between machines cannot make a live proxy look dead.
 */
import type { Queryable } from '../db/connection.js';
import { quoteIdent } from '../core/quote.js';
import { stateSchemaExists } from './schema.js';
import { listVersions } from './versions.js';

/** A proxy whose heartbeat is older than this is taken for dead (3 missed beats at the default 5 s). */
export const DEFAULT_STALE_AFTER_MS = 15_000;

/** One version's entry in a heartbeat row: `{"clients": n, "last_query_at": iso-time | null}`. */
export interface VersionHeartbeat {
  clients: number;
  last_query_at: string | null;
}

export interface Heartbeat {
  proxyId: string;
  hostname: string;
  pid: number;
  /** The address clients connect to, e.g. `127.0.0.1:6432`. */
  listen: string;
  /** The migrated schema the proxy routes (`--schema`). */
  schema: string;
  startedAt: Date;
  /** Keyed by version schema. Every version the proxy knows is listed, with 0 clients if unused. */
  versions: Record<string, VersionHeartbeat>;
}

/** Inserts or rewrites this proxy's row, stamped with the server's now(). */
export async function writeHeartbeat(db: Queryable, stateSchema: string, beat: Heartbeat): Promise<void> {
  // The meta row remembers, after heartbeat rows expire, that proxies serve this schema: from then on
  // a version no live proxy reports is unknown, never "nobody uses it".
  await db.query(
    `WITH seen AS (
       INSERT INTO ${quoteIdent(stateSchema)}.meta (key, value) VALUES ('proxies_seen:' || $5, now()::text)
       ON CONFLICT (key) DO NOTHING)
     INSERT INTO ${quoteIdent(stateSchema)}.proxies
       (proxy_id, hostname, pid, listen, schema_name, started_at, heartbeat_at, versions)
     VALUES ($1, $2, $3, $4, $5, $6, now(), $7)
     ON CONFLICT (proxy_id) DO UPDATE
       SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, listen = EXCLUDED.listen,
           schema_name = EXCLUDED.schema_name, started_at = EXCLUDED.started_at,
           heartbeat_at = now(), versions = EXCLUDED.versions`,
    [beat.proxyId, beat.hostname, beat.pid, beat.listen, beat.schema, beat.startedAt, JSON.stringify(beat.versions)],
  );
}

/** Removes this proxy's row (clean shutdown). */
export async function deleteHeartbeat(db: Queryable, stateSchema: string, proxyId: string): Promise<void> {
  await db.query(`DELETE FROM ${quoteIdent(stateSchema)}.proxies WHERE proxy_id = $1`, [proxyId]);
}

/** Deletes rows of proxies silent for longer than `olderThanMs` (crashed, or killed without cleanup). */
export async function expireHeartbeats(db: Queryable, stateSchema: string, olderThanMs: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM ${quoteIdent(stateSchema)}.proxies WHERE heartbeat_at < now() - make_interval(secs => $1::double precision / 1000)`,
    [olderThanMs],
  );
  return rowCount ?? 0;
}

/**
 * Proxies of `schema` whose last heartbeat is no later than `since` but still within the stale
 * window before it: those that were live then and have not spoken since.
 */
export async function proxiesSilentSince(db: Queryable, stateSchema: string, schema: string, since: Date, staleAfterMs: number): Promise<string[]> {
  const { rows } = await db.query<{ proxy_id: string }>(
    `SELECT proxy_id FROM ${quoteIdent(stateSchema)}.proxies
      WHERE schema_name = $1 AND heartbeat_at <= $2
        AND heartbeat_at >= $2::timestamptz - make_interval(secs => $3::double precision / 1000)`,
    [schema, since, staleAfterMs],
  );
  return rows.map((row) => row.proxy_id);
}

export interface ProxyClients {
  proxyId: string;
  hostname: string;
  pid: number;
  listen: string;
  clients: number;
  lastQueryAt: Date | null;
  heartbeatAt: Date;
}

export interface VersionClients {
  /** Clients across all fresh proxies. */
  clients: number;
  /** The latest query any fresh proxy saw on this version. */
  lastQueryAt: Date | null;
  /** One entry per fresh proxy that reported this version (with 0 clients too). */
  proxies: ProxyClients[];
}

export interface StaleProxy {
  proxyId: string;
  hostname: string;
  pid: number;
  listen: string;
  heartbeatAt: Date;
}

/**
 * What `readLiveClients` returns:
 * - `versions`: keyed by version schema (e.g. `public_02_rename_email`); every live version of the
 *   schema is present (0 clients when no proxy uses it), plus any version a fresh proxy still reports
 *   although it is no longer live.
 * - `unreported`: live versions no fresh proxy mentioned. Their client count is unknown rather than
 *   zero (no proxy runs, or the version is newer than the last heartbeat); callers that must be sure
 *   (`complete`) should treat them as possibly in use or wait one heartbeat.
 * - `proxies`: fresh proxies for this schema; `staleProxies`: rows too old to trust.
 */
export interface LiveClients {
  /** Whether any proxy has ever sent a heartbeat for this schema (rows of dead proxies expire). */
  proxiesSeen: boolean;
  /** The server time the rows were judged at. */
  checkedAt: Date;
  staleAfterMs: number;
  versions: Record<string, VersionClients>;
  unreported: string[];
  proxies: StaleProxy[];
  staleProxies: StaleProxy[];
}

interface ProxyRow {
  proxy_id: string;
  hostname: string;
  pid: number;
  listen: string;
  heartbeat_at: Date;
  versions: Record<string, Partial<VersionHeartbeat>>;
  fresh: boolean;
  checked_at: Date;
}

/** Live clients per version of `schema`, summed over the proxies whose heartbeat is fresh. */
export async function readLiveClients(
  db: Queryable,
  stateSchema: string,
  schema: string,
  options: { staleAfterMs?: number } = {},
): Promise<LiveClients> {
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const result: LiveClients = { proxiesSeen: false, checkedAt: new Date(), staleAfterMs, versions: {}, unreported: [], proxies: [], staleProxies: [] };
  if (!(await stateSchemaExists(db, stateSchema))) return result;
  const seen = await db.query(`SELECT 1 FROM ${quoteIdent(stateSchema)}.meta WHERE key = 'proxies_seen:' || $1`, [schema]);
  result.proxiesSeen = seen.rows.length > 0;
  // One connection, one query at a time.
  const live = await listVersions(db, stateSchema, schema);
  const { rows } = await db.query<ProxyRow>(
      `SELECT proxy_id, hostname, pid, listen, heartbeat_at, versions,
              heartbeat_at >= now() - make_interval(secs => $2::double precision / 1000) AS fresh,
              now() AS checked_at
         FROM ${quoteIdent(stateSchema)}.proxies
        WHERE schema_name = $1
        ORDER BY proxy_id`,
      [schema, staleAfterMs],
    );
  for (const version of live) result.versions[version.versionSchema] = { clients: 0, lastQueryAt: null, proxies: [] };
  const reported = new Set<string>();
  for (const row of rows) {
    result.checkedAt = row.checked_at;
    const proxy = { proxyId: row.proxy_id, hostname: row.hostname, pid: row.pid, listen: row.listen, heartbeatAt: row.heartbeat_at };
    if (!row.fresh) {
      result.staleProxies.push(proxy);
      continue;
    }
    result.proxies.push(proxy);
    for (const [versionSchema, entry] of Object.entries(row.versions ?? {})) {
      reported.add(versionSchema);
      const clients = Number(entry.clients ?? 0);
      const lastQueryAt = entry.last_query_at ? new Date(entry.last_query_at) : null;
      const version = (result.versions[versionSchema] ??= { clients: 0, lastQueryAt: null, proxies: [] });
      version.clients += clients;
      if (lastQueryAt && (!version.lastQueryAt || lastQueryAt > version.lastQueryAt)) version.lastQueryAt = lastQueryAt;
      version.proxies.push({ ...proxy, clients, lastQueryAt });
    }
  }
  result.unreported = live.map((v) => v.versionSchema).filter((name) => !reported.has(name));
  return result;
}
