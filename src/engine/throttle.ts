/**
 * Whether a backfill may run its next batch. Asked before every batch: it may not while an operator
 * paused it (`tandem backfill --pause`, or the throttle file exists), a replica has fallen behind by
 * more than the limit, sessions queue for locks on the table, or the server is busy. The backfill
 * then waits and asks again; the answer says why, so a throttled backfill never reads as stalled.
 *
 * Replica lag is measured in time, the way a reader of the replica feels it: how long ago the
 * primary had written the WAL the replica has not replayed yet. pg_stat_replication's replay_lag
 * says so for a replica that keeps replaying, but it keeps its last value when replay stops (a
 * paused or stuck replica) and is empty when the replica was idle; so tandem also keeps its own
 * record of the primary's WAL position over time and reads a replica's replay position against it.
 */
import { existsSync } from 'node:fs';
import type pg from 'pg';
import { connect, redactPassword, type Queryable } from '../db/connection.js';
import type { Logger } from '../observe/logger.js';
import { readBackfillPause, type BackfillPause } from '../state/backfill-pauses.js';
import type { ThrottleReason } from '../state/backfills.js';

const PAUSE_READ_MS = 250;

export interface ThrottleSettings {
  /** Hold batches while any replica is further behind than this. */
  maxReplicaLagMs?: number;
  /** Replicas asked directly (beyond those pg_stat_replication lists): a cascade, or one behind a pooler. */
  replicaUrls?: string[];
  /** Hold batches while more client sessions than this are active (other than the backfill's own). */
  maxActiveBackends?: number;
  /** Hold batches while more sessions than this wait on a lock and touch the table. */
  maxLockWaiters?: number;
  /** Hold batches while this file exists. */
  throttleFile?: string;
}

export interface ThrottleVerdict {
  reason: ThrottleReason;
  detail: string;
}

export interface ThrottleCheck {
  /** Undefined: the next batch may run. */
  verdict: ThrottleVerdict | undefined;
  /** The largest lag among the replicas, in seconds; null when no replica is watched or none could be measured. */
  replicaLagSeconds: number | null;
  /** Each watched replica's lag in seconds, null for one that is gone or unreachable. */
  replicas: Map<string, number | null>;
}

/** The primary's WAL position over time: when did the primary write what a replica has replayed up to? */
class WalTimeline {
  private readonly samples: { at: number; lsn: bigint }[] = [];

  constructor(private readonly horizonMs: number) {}

  record(lsn: bigint, at = Date.now()): void {
    const last = this.samples.at(-1);
    if (!last || lsn > last.lsn) this.samples.push({ at, lsn });
    // Older samples only ever tell that a replica is further behind than the horizon, which is past any limit.
    while (this.samples.length > 1 && at - this.samples[0]!.at > this.horizonMs) this.samples.shift();
  }

  /** How long ago the primary first wrote past `replayed`: 0 when the replica has everything recorded. */
  behindMs(replayed: bigint, now = Date.now()): number {
    const first = this.samples.find((s) => s.lsn > replayed);
    return first ? now - first.at : 0;
  }
}

/** `16/B374D848` as a number. */
export function parseLsn(text: string): bigint {
  const [high, low] = text.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

export class Throttle {
  private readonly timeline: WalTimeline;
  /** Replicas pg_stat_replication has listed during this run: one that leaves the list is reported, not forgotten. */
  private readonly seen = new Set<string>();
  private readonly gone = new Set<string>();
  private readonly direct = new Map<string, pg.Client>();
  private pause: BackfillPause | undefined;
  private pauseReadAt = 0;

  constructor(
    private readonly settings: ThrottleSettings,
    private readonly stateSchema: string,
    private readonly schema: string,
    private readonly logger: Logger,
  ) {
    this.timeline = new WalTimeline(Math.max(60_000, 4 * (settings.maxReplicaLagMs ?? 0)));
  }

  get watchesReplicas(): boolean {
    return this.settings.maxReplicaLagMs !== undefined;
  }

  /** The first reason found to hold back, in the order an operator most needs to hear it. */
  async check(db: Queryable, table: string): Promise<ThrottleCheck> {
    const replicas = this.watchesReplicas ? await this.replicaLags(db) : new Map<string, number | null>();
    const measured = [...replicas.values()].filter((lag): lag is number => lag !== null);
    const replicaLagSeconds = measured.length ? Math.max(...measured) : null;
    const verdict = (await this.manual(db)) ?? this.replicaVerdict(replicas) ?? (await this.load(db, table));
    return { verdict, replicaLagSeconds, replicas };
  }

  private async manual(db: Queryable): Promise<ThrottleVerdict | undefined> {
    const file = this.settings.throttleFile;
    if (file && existsSync(file)) return { reason: 'manual', detail: `the throttle file ${file} exists` };
    // Read at most every PAUSE_READ_MS: a round trip before every batch of a fast backfill costs more than a pause that lands a few batches later.
    if (Date.now() - this.pauseReadAt >= PAUSE_READ_MS) {
      this.pause = await readBackfillPause(db, this.stateSchema, this.schema);
      this.pauseReadAt = Date.now();
    }
    const pause = this.pause;
    if (pause) return { reason: 'manual', detail: `paused by ${pause.pausedBy} at ${pause.pausedAt.toISOString()} (tandem backfill --resume goes on)` };
    return undefined;
  }

  private replicaVerdict(replicas: Map<string, number | null>): ThrottleVerdict | undefined {
    const limit = this.settings.maxReplicaLagMs;
    if (limit === undefined) return undefined;
    const behind: string[] = [];
    for (const [name, lag] of replicas) {
      if (lag === null) behind.push(`${name} is gone or unreachable`);
      else if (lag * 1000 > limit) behind.push(`${name} is ${lag.toFixed(1)} s behind`);
    }
    if (!behind.length) return undefined;
    return { reason: 'replica_lag', detail: `${behind.join('; ')} (limit ${limit / 1000} s)` };
  }

  private async load(db: Queryable, table: string): Promise<ThrottleVerdict | undefined> {
    const { maxActiveBackends, maxLockWaiters } = this.settings;
    if (maxActiveBackends === undefined && maxLockWaiters === undefined) return undefined;
    // A session queued behind a row lock holds a lock on the row's table while it waits for the
    // holder's transaction id; one queued for the table itself wants a lock on it: either touches it.
    const { rows } = await db.query<{ active: number; waiting: number }>(
      `SELECT count(*) FILTER (WHERE a.state = 'active' AND a.backend_type = 'client backend')::int AS active,
              count(*) FILTER (WHERE a.wait_event_type = 'Lock'
                                 AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.relation = $1::regclass))::int AS waiting
         FROM pg_stat_activity a
        WHERE a.pid <> pg_backend_pid()`,
      [table],
    );
    const { active, waiting } = rows[0]!;
    if (maxLockWaiters !== undefined && waiting > maxLockWaiters) {
      return { reason: 'lock_waiters', detail: `${waiting} sessions wait on locks of ${table} (limit ${maxLockWaiters})` };
    }
    if (maxActiveBackends !== undefined && active > maxActiveBackends) {
      return { reason: 'load', detail: `${active} active sessions (limit ${maxActiveBackends})` };
    }
    return undefined;
  }

  /** Every watched replica's lag in seconds, null for one that left or cannot be asked. */
  private async replicaLags(db: Queryable): Promise<Map<string, number | null>> {
    const now = Date.now();
    const current = await db.query<{ lsn: string }>(`SELECT pg_current_wal_lsn()::text AS lsn`);
    this.timeline.record(parseLsn(current.rows[0]!.lsn), now);
    const lags = new Map<string, number | null>();
    const { rows } = await db.query<{ name: string; replay_lsn: string | null; replay_lag: number | null }>(
      `SELECT coalesce(nullif(application_name, ''), 'replica') || '@' || coalesce(host(client_addr), 'local') AS name,
              replay_lsn::text AS replay_lsn, extract(epoch FROM replay_lag)::float8 AS replay_lag
         FROM pg_stat_replication`,
    );
    for (const row of rows) {
      if (!this.seen.has(row.name)) {
        this.seen.add(row.name);
        this.logger.info({ replica: row.name }, `watching the lag of replica ${row.name}`);
      }
      // Without pg_monitor (or pg_read_all_stats) the positions read as NULL: unknown is not "caught up".
      const behind = row.replay_lsn === null ? null : Math.max(this.timeline.behindMs(parseLsn(row.replay_lsn), now) / 1000, row.replay_lag ?? 0);
      // Two replicas under one name and address: the one further behind counts.
      const other = lags.get(row.name);
      lags.set(row.name, behind === null || other === null ? null : Math.max(behind, other ?? 0));
    }
    for (const name of this.seen) {
      if (lags.has(name)) {
        if (this.gone.delete(name)) this.logger.info({ replica: name }, `replica ${name} is streaming again`);
      } else {
        lags.set(name, null);
        if (!this.gone.has(name)) {
          this.gone.add(name);
          this.logger.warn({ replica: name }, `replica ${name} no longer streams from the primary: batches wait until it is back (restart the command without it if it left for good)`);
        }
      }
    }
    for (const url of this.settings.replicaUrls ?? []) lags.set(redactPassword(url), await this.askReplica(url, now));
    return lags;
  }

  /** A replica named by --replica-url: its replay position, read on the replica itself. */
  private async askReplica(url: string, now: number): Promise<number | null> {
    try {
      let client = this.direct.get(url);
      if (!client) {
        client = await connect(url, { applicationName: 'tandem' });
        this.direct.set(url, client);
      }
      const { rows } = await client.query<{ recovery: boolean; replayed: string | null }>(
        `SELECT pg_is_in_recovery() AS recovery, pg_last_wal_replay_lsn()::text AS replayed`,
      );
      const { recovery, replayed } = rows[0]!;
      if (!recovery || replayed === null) throw new Error('it is not a replica (pg_is_in_recovery() is false)');
      return this.timeline.behindMs(parseLsn(replayed), now) / 1000;
    } catch (error) {
      this.logger.warn({ replica: redactPassword(url), error: (error as Error).message }, `cannot read the lag of replica ${redactPassword(url)}`);
      await this.direct.get(url)?.end().catch(() => {});
      this.direct.delete(url);
      return null;
    }
  }

  async close(): Promise<void> {
    for (const client of this.direct.values()) await client.end().catch(() => {});
    this.direct.clear();
  }
}
