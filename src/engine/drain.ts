/**
 * Is the version that `complete` retires still in use? The proxies' heartbeats say how many clients
 * each version has. A version no live proxy reports is unknown, not safe: the proxy in front of its
 * clients may be down or cut off from the database. Only when no proxy has ever reported on the
 * schema (tandem is used without its proxy) is there nothing to ask, and `complete` says so.
 */
import type { Queryable } from '../db/connection.js';
import type { Logger } from '../observe/logger.js';
import { TandemError } from '../errors/index.js';
import { DEFAULT_STALE_AFTER_MS, proxiesSilentSince, readLiveClients } from '../state/heartbeats.js';

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

export interface DrainOptions {
  /** Wait this long for the previous version's clients to leave before refusing. */
  waitForDrainMs?: number;
  /** Heartbeats older than this are not trusted. */
  staleAfterMs?: number;
  /** Called each time the wait finds clients still there. */
  onDrainWait?: (check: RetirementCheck) => void;
}

/**
 * Returns once `versionSchema` may be retired (no client left, or no proxy to ask); waits up to
 * `waitForDrainMs` for its clients to leave, then refuses.
 */
export async function awaitRetirable(db: Queryable, stateSchema: string, schema: string, versionSchema: string, options: DrainOptions, logger: Logger): Promise<void> {
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const deadline = Date.now() + (options.waitForDrainMs ?? 0);
  for (;;) {
    const check = await checkRetirement(db, stateSchema, schema, versionSchema, staleAfterMs);
    if (check.safe) {
      if (check.noProxies) {
        logger.warn({ version: versionSchema }, `no tandem proxy reports on schema "${schema}": cannot tell whether anything still uses ${versionSchema}`);
      }
      return;
    }
    options.onDrainWait?.(check);
    if (Date.now() >= deadline) {
      throw new TandemError({ kind: 'version_in_use', versionSchema, clients: check.clients, details: check.details, waited: Boolean(options.waitForDrainMs) });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, Math.max(50, deadline - Date.now()))));
  }
}

/**
 * Waits until each proxy that was live when this began has sent a newer heartbeat (see
 * AwaitProxiesStep). A proxy that stays silent for the whole stale window is no longer live anyway.
 */
export async function awaitProxies(db: Queryable, stateSchema: string, schema: string, staleAfterMs: number, logger: Logger): Promise<void> {
  const { rows } = await db.query<{ now: Date }>('SELECT now() AS now');
  const since = rows[0]!.now;
  const deadline = Date.now() + staleAfterMs;
  for (;;) {
    const waiting = await proxiesSilentSince(db, stateSchema, schema, since, staleAfterMs);
    if (!waiting.length) return;
    if (Date.now() > deadline) {
      logger.warn({ proxies: waiting }, 'some proxies sent no heartbeat since the old version was retired; going on');
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
