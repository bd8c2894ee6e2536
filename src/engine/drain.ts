/**
 * Is the version that `complete` retires still in use? The proxies' heartbeats say how many clients
 * each version has. A version no live proxy reports is unknown, not safe: the proxy in front of its
 * clients may be down or cut off from the database. Only when no proxy has ever reported on the
 * schema (tandem is used without its proxy) is there nothing to ask, and `complete` says so.
 */
import type { Queryable } from '../db/connection.js';
import type { Logger } from '../observe/logger.js';
import { readLiveClients } from '../state/heartbeats.js';
import { quoteIdent } from '../core/quote.js';

export interface RetirementCheck {
  versionSchema: string;
  /** Live clients across fresh proxies; null when no fresh proxy reports the version. */
  clients: number | null;
  /** True when no proxy (fresh or stale) has ever reported on this schema. */
  noProxies: boolean;
  safe: boolean;
  /** One line per proxy that reports clients, or why the count is unknown. */
  details: string[];
}

export async function checkRetirement(
  db: Queryable,
  stateSchema: string,
  schema: string,
  versionSchema: string,
  staleAfterMs: number,
): Promise<RetirementCheck> {
  const live = await readLiveClients(db, stateSchema, schema, { staleAfterMs });
  const noProxies = !live.proxiesSeen && live.proxies.length === 0 && live.staleProxies.length === 0;
  const version = live.versions[versionSchema];
  const reported = !live.unreported.includes(versionSchema) && version !== undefined && version.proxies.length > 0;
  const details: string[] = [];
  if (reported) {
    for (const proxy of version.proxies.filter((p) => p.clients > 0)) {
      const last = proxy.lastQueryAt ? `last query ${proxy.lastQueryAt.toISOString()}` : 'no query yet';
      details.push(`proxy ${proxy.hostname} pid ${proxy.pid} (${proxy.listen}): ${proxy.clients} client${proxy.clients === 1 ? '' : 's'}, ${last}`);
    }
  } else if (!noProxies) {
    const stale = live.staleProxies.map((p) => `${p.hostname} pid ${p.pid} (${p.listen}), last heartbeat ${p.heartbeatAt.toISOString()}`);
    details.push(
      live.proxies.length
        ? `no live proxy reports "${versionSchema}" yet`
        : `no proxy has sent a heartbeat in the last ${Math.round(staleAfterMs / 1000)} s${stale.length ? `: ${stale.join('; ')}` : ' (proxies have served this schema before)'}`,
    );
  }
  const clients = reported ? version.clients : null;
  return { versionSchema, clients, noProxies, safe: noProxies || clients === 0, details };
}

/**
 * Waits until each proxy that was live when this began has sent a newer heartbeat (see
 * AwaitProxiesStep). A proxy that stays silent for the whole stale window is no longer live anyway.
 */
export async function awaitProxies(db: Queryable, stateSchema: string, schema: string, staleAfterMs: number, logger: Logger): Promise<void> {
  const table = `${quoteIdent(stateSchema)}.proxies`;
  const { rows } = await db.query<{ now: Date }>('SELECT now() AS now');
  const since = rows[0]!.now;
  const deadline = Date.now() + staleAfterMs;
  for (;;) {
    const waiting = await db.query<{ proxy_id: string }>(
      `SELECT proxy_id FROM ${table}
        WHERE schema_name = $1 AND heartbeat_at <= $2
          AND heartbeat_at >= $2::timestamptz - make_interval(secs => $3::double precision / 1000)`,
      [schema, since, staleAfterMs],
    );
    if (!waiting.rows.length) return;
    if (Date.now() > deadline) {
      logger.warn({ proxies: waiting.rows.map((r) => r.proxy_id) }, 'some proxies sent no heartbeat since the old version was retired; going on');
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
