/**
 * The proxy's Prometheus metrics. Rare events (a connection, a failure) increment counters directly;
 * per-message figures (bytes, queries) are read from the usage ledger at scrape time, so the
 * forwarding path never touches a labelled metric.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PoolKey, PoolStats } from './pool/pool.js';
import type { UsageLedger } from './usage.js';
import { WaitHistogram, type WaitCounts } from './wait-histogram.js';

/** A native pool's waits (session/native-pooled.ts), by pool key. */
export type NativeWaits = { key: PoolKey } & Omit<WaitCounts, 'database' | 'version'>;

/** Label for sessions on the server's defaults (no version routed). */
const NO_VERSION = 'none';

export type RejectReason = 'max_client_conn' | 'shutting_down' | 'unknown_version' | 'catalog_unavailable' | 'database_disabled';
/** What the proxy knows beyond its sessions, read at scrape time. */
export interface ProxyFacts {
  /** Each database's versions, newest first, as the proxy last loaded them. */
  versions(): Iterable<{ database: string; versions: readonly { versionSchema: string; startedAt: Date }[] }>;
  /** The answer /readyz would give now. */
  ready(): Promise<boolean>;
}

export type ErrorKind = 'protocol' | 'login_timeout' | 'upstream_connect' | 'upstream_lost' | 'tls' | 'retired_version' | 'internal';

type ConnectionResult = 'established' | 'failed' | 'rejected' | 'cancel';

export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly connections: Counter<'result'>;
  /**
   * Connections counted since the last scrape, by outcome: added to the counter when it is read, so
   * that a connection costs a number's increment, not prom-client's label hashing (a login per
   * transaction with pgbench -C; bench/README.md).
   */
  private readonly uncountedConnections = new Map<ConnectionResult, number>();
  private readonly rejected: Counter<'reason'>;
  private readonly errors: Counter<'kind'>;
  private readonly authFailures: Counter;
  private readonly connectSeconds: Histogram;
  private readonly poolWaitSeconds: WaitHistogram;
  private readonly pins: Counter<'reason'>;
  /** Where the pool gauges are read at scrape time (set when the proxy pools). */
  poolStats: (() => PoolStats[]) | undefined;
  /** Native logins and the thread's fallbacks to JavaScript by reason, read at scrape time (set with --native-login on). */
  nativeLogins: (() => { logins: number; brief: number; fallbacks: Record<string, number> }) | undefined;
  /** The native thread's pools now (session/native-pooled.ts), closed ones not freed yet included. */
  nativePools: (() => number) | undefined;

  constructor(ledger: UsageLedger, facts: ProxyFacts) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'tandem_proxy_process_' });
    const uncounted = this.uncountedConnections;
    this.connections = new Counter({
      name: 'tandem_proxy_connections_total',
      help: 'Client connections accepted, by outcome (established, failed, rejected, cancel)',
      labelNames: ['result'],
      registers,
      collect() {
        for (const [result, count] of uncounted) this.inc({ result }, count);
        uncounted.clear();
      },
    });
    this.rejected = new Counter({
      name: 'tandem_proxy_rejected_connections_total',
      help: 'Client connections refused by the proxy itself, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.errors = new Counter({
      name: 'tandem_proxy_errors_total',
      help: 'Sessions ended by a failure, by kind',
      labelNames: ['kind'],
      registers,
    });
    this.authFailures = new Counter({
      name: 'tandem_proxy_auth_failures_total',
      help: 'Authentication failures reported by the server (SQLSTATE class 28)',
      registers,
    });
    this.connectSeconds = new Histogram({
      name: 'tandem_proxy_upstream_connect_seconds',
      help: 'Time to open a connection to PostgreSQL (TCP and TLS), before authentication',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.poolWaitSeconds = new WaitHistogram(this.registry);
    this.pins = new Counter({
      name: 'tandem_proxy_pinned_clients_total',
      help: 'Clients pinned to their server connection for the rest of their session, by what they ran (transaction mode)',
      labelNames: ['reason'],
      registers,
    });
    const poolGauge = (name: string, help: string, value: (stats: PoolStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['database', 'user', 'version'],
        registers,
        collect: () => {
          const gauge = this.registry.getSingleMetric(name) as Gauge<'database' | 'user' | 'version'>;
          gauge.reset();
          for (const stats of this.poolStats?.() ?? []) gauge.set({ database: stats.database, user: stats.user, version: stats.version || NO_VERSION }, value(stats));
        },
      });
    poolGauge('tandem_proxy_pool_server_connections_active', 'Server connections lent to clients, per pool', (p) => p.active);
    poolGauge('tandem_proxy_pool_server_connections_idle', 'Server connections idle in the pool', (p) => p.idle);
    poolGauge('tandem_proxy_pool_server_connections_used', 'Server connections being rolled back or reset after use', (p) => p.used);
    poolGauge('tandem_proxy_pool_server_connections_opening', 'Server connections being opened', (p) => p.opening);
    poolGauge('tandem_proxy_pool_waiting_clients', 'Clients waiting for a server connection', (p) => p.waitingClients);
    poolGauge('tandem_proxy_pool_max_wait_seconds', 'How long the oldest waiting client has waited', (p) => p.maxWaitMs / 1000);
    new Gauge({
      name: 'tandem_proxy_client_connections',
      help: 'Authenticated client sessions now open, by database and version schema',
      labelNames: ['database', 'version'],
      registers,
      collect() {
        this.reset();
        for (const v of ledger.snapshot().versions) {
          if (v.clients > 0) this.set({ database: v.database, version: v.version || NO_VERSION }, v.clients);
        }
      },
    });
    new Counter({
      name: 'tandem_proxy_queries_total',
      help: 'Query and Execute messages sent by clients, by database and version schema',
      labelNames: ['database', 'version'],
      registers,
      collect() {
        this.reset();
        for (const v of ledger.snapshot().versions) this.inc({ database: v.database, version: v.version || NO_VERSION }, v.queries);
      },
    });
    new Gauge({
      name: 'tandem_proxy_version_superseded_timestamp_seconds',
      help: 'Unix time a newer version of the database was started, for every version but the latest: alert on clients still here long after',
      labelNames: ['database', 'version'],
      registers,
      collect() {
        this.reset();
        for (const { database, versions } of facts.versions()) {
          versions.forEach((v, i) => {
            if (i > 0) this.set({ database, version: v.versionSchema }, versions[i - 1]!.startedAt.getTime() / 1000);
          });
        }
      },
    });
    new Gauge({
      name: 'tandem_proxy_ready',
      help: '1 when the proxy can serve clients (what /readyz answers), else 0',
      registers,
      async collect() {
        this.set((await facts.ready()) ? 1 : 0);
      },
    });
    new Counter({
      name: 'tandem_proxy_client_received_bytes_total',
      help: 'Bytes received from clients',
      registers,
      collect() {
        this.reset();
        this.inc(ledger.snapshot().bytesIn);
      },
    });
    const nativePools = () => this.nativePools?.();
    new Gauge({
      name: 'tandem_proxy_native_pools',
      help: 'Pools the native thread keeps for transaction-mode clients (one per pool key and set of client parameters), closed ones not freed yet included',
      registers,
      collect() {
        this.set(nativePools() ?? 0);
      },
    });
    const nativeLogins = () => this.nativeLogins?.();
    new Counter({
      name: 'tandem_proxy_native_logins_total',
      help: 'Clients the native thread logged in itself with a learned login (--native-login on)',
      registers,
      collect() {
        this.reset();
        const figures = nativeLogins();
        if (figures) this.inc(figures.logins);
      },
    });
    new Counter({
      name: 'tandem_proxy_native_brief_clients_total',
      help: 'Native logins that ended before the thread reported them, counted only in the totals (--native-login on with no line logged per client)',
      registers,
      collect() {
        this.reset();
        const figures = nativeLogins();
        if (figures) this.inc(figures.brief);
      },
    });
    new Counter({
      name: 'tandem_proxy_native_login_fallbacks_total',
      help: 'Connections the native thread accepted and handed to JavaScript to log in, by reason (--native-login on)',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, count] of Object.entries(nativeLogins()?.fallbacks ?? {})) this.inc({ reason }, count);
      },
    });
    new Counter({
      name: 'tandem_proxy_client_sent_bytes_total',
      help: 'Bytes sent to clients',
      registers,
      collect() {
        this.reset();
        this.inc(ledger.snapshot().bytesOut);
      },
    });
  }

  connection(result: ConnectionResult, count = 1): void {
    this.uncountedConnections.set(result, (this.uncountedConnections.get(result) ?? 0) + count);
  }

  reject(reason: RejectReason): void {
    this.rejected.inc({ reason });
  }

  error(kind: ErrorKind): void {
    this.errors.inc({ kind });
  }

  authFailure(): void {
    this.authFailures.inc();
  }

  poolWait(key: PoolKey, seconds: number): void {
    this.poolWaitSeconds.observe(key.database, key.version || NO_VERSION, seconds);
  }

  /** Where the native forwarder's pool waits are read at scrape time (set when the proxy pools). */
  set nativePoolWaits(read: () => NativeWaits[]) {
    this.poolWaitSeconds.native = () =>
      read().map(({ key, count, sumSeconds, buckets }) => ({ database: key.database, version: key.version || NO_VERSION, count, sumSeconds, buckets }));
  }

  pinned(reason: string): void {
    this.pins.inc({ reason });
  }

  upstreamConnected(seconds: number): void {
    this.connectSeconds.observe(seconds);
  }

  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
