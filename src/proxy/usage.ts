/**
 * Who uses which version. Sessions keep plain number fields that the hot path bumps; this ledger
 * sums them only when someone asks (a heartbeat, a metrics scrape, /status), and keeps the totals
 * of sessions that have ended so counters never go backwards.
 */

import { ChurnSet } from './churn.js';

/** What the ledger reads from a session. */
export interface SessionUsage {
  readonly id: number;
  readonly database: string | undefined;
  /** The version schema, or undefined for a session on the server's defaults. */
  readonly versionSchema: string | undefined;
  readonly queries: number;
  /** Epoch milliseconds of the last query, 0 for none. */
  readonly lastQueryAt: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Counted as a client of its version only once it has authenticated. */
  readonly established: boolean;
}

export interface VersionUsage {
  database: string;
  /** Version schema, or '' for sessions on the server's defaults. */
  version: string;
  clients: number;
  queries: number;
  /** Epoch milliseconds, 0 for none. */
  lastQueryAt: number;
}

export interface UsageSnapshot {
  versions: VersionUsage[];
  bytesIn: number;
  bytesOut: number;
}

function keyOf(database: string, version: string): string {
  return `${database}\u0000${version}`;
}

export class UsageLedger {
  private readonly live = new ChurnSet<SessionUsage>();
  private readonly ended = new Map<string, VersionUsage>();
  private endedBytesIn = 0;
  private endedBytesOut = 0;

  add(session: SessionUsage): void {
    this.live.add(session);
  }

  /** Folds an ended session into the totals. */
  remove(session: SessionUsage): void {
    if (!this.live.delete(session)) return;
    this.addEnded(session.established ? session.database : undefined, session.versionSchema, session);
  }

  /**
   * Adds what ended sessions used to the totals (brief native logins come only this way, added up);
   * `database` undefined: their bytes alone (sessions that never logged in).
   */
  addEnded(database: string | undefined, versionSchema: string | undefined, used: Pick<SessionUsage, 'bytesIn' | 'bytesOut' | 'queries' | 'lastQueryAt'>): void {
    this.endedBytesIn += used.bytesIn;
    this.endedBytesOut += used.bytesOut;
    if (database === undefined) return;
    const entry = this.entry(this.ended, database, versionSchema ?? '');
    entry.queries += used.queries;
    entry.lastQueryAt = Math.max(entry.lastQueryAt, used.lastQueryAt);
  }

  get size(): number {
    return this.live.size;
  }

  snapshot(): UsageSnapshot {
    const merged = new Map<string, VersionUsage>();
    for (const [key, value] of this.ended) merged.set(key, { ...value });
    let bytesIn = this.endedBytesIn;
    let bytesOut = this.endedBytesOut;
    for (const session of this.live) {
      bytesIn += session.bytesIn;
      bytesOut += session.bytesOut;
      if (session.database === undefined || !session.established) continue;
      const entry = this.entry(merged, session.database, session.versionSchema ?? '');
      entry.clients++;
      entry.queries += session.queries;
      entry.lastQueryAt = Math.max(entry.lastQueryAt, session.lastQueryAt);
    }
    return { versions: [...merged.values()], bytesIn, bytesOut };
  }

  private entry(map: Map<string, VersionUsage>, database: string, version: string): VersionUsage {
    const key = keyOf(database, version);
    let entry = map.get(key);
    if (!entry) {
      entry = { database, version, clients: 0, queries: 0, lastQueryAt: 0 };
      map.set(key, entry);
    }
    return entry;
  }
}

/**
 * Queries per second per version over the last sampling window: the ledger only counts, so a rate
 * needs two samples taken apart; until the second one it is unknown (null), not zero.
 */
export class QueryRates {
  private previous: { at: number; queries: Map<string, number> } | undefined;
  private rates: Map<string, number> | undefined;

  sample(snapshot: UsageSnapshot, now = Date.now()): void {
    const queries = new Map(snapshot.versions.map((v) => [keyOf(v.database, v.version), v.queries]));
    const before = this.previous;
    if (before && now > before.at) {
      const seconds = (now - before.at) / 1000;
      this.rates = new Map([...queries].map(([key, count]) => [key, Math.max(0, count - (before.queries.get(key) ?? 0)) / seconds]));
    }
    this.previous = { at: now, queries };
  }

  perSecond(database: string, version: string): number | null {
    return this.rates ? (this.rates.get(keyOf(database, version)) ?? 0) : null;
  }
}
