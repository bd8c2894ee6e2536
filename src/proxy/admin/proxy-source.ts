/**
 * The admin console's figures and commands over the live proxy: its sessions, its pools, the usage
 * ledger and the version catalogs (the console itself, console.ts, only formats and parses).
 */
import type { Catalogs } from '../catalog.js';
import type { ReadonlyChurnSet } from '../churn.js';
import { splitHostPort, type PoolingOptions } from '../config.js';
import { Counter } from '../native.js';
import type { ProxyPooling } from '../pooling.js';
import { nativeConnectionIds } from '../session/native-pooled.js';
import type { Session } from '../session/session.js';
import type { UpstreamTarget } from '../upstream.js';
import type { UsageLedger } from '../usage.js';
import type { AdminClientRow, AdminConfigRow, AdminDatabaseRow, AdminListCounts, AdminPauseState, AdminPoolRow, AdminUserRow, AdminServerRow, AdminSource, AdminStatsFigures, AdminStatsRow, AdminVersionRow } from './source.js';

export interface ProxySourceDeps {
  sessions: ReadonlyChurnSet<Session>;
  pooling: ProxyPooling;
  options: PoolingOptions;
  ledger: UsageLedger;
  catalogs: Catalogs;
  upstream: UpstreamTarget;
  /** When the proxy started (ms since the epoch): the averages are per second since. */
  startedAt: number;
  /** Ends a session from the proxy's side (KILL). */
  kill(session: Session): void;
  reload(): Promise<void>;
  shutdown(): void;
  /** DISABLE: the native thread forgets the logins it learned for the database (they would skip the check). */
  forgetNativeLogins(database: string): void;
}

/** The console's source, told when a session ends so that SHOW STATS keeps counting what it did. */
export interface ProxyAdminSource extends AdminSource {
  sessionEnded(session: Session): void;
  /** Brief native logins of a database and version ended: their counters added up (Counter). */
  briefEnded(database: string, version: string, counters: Float64Array): void;
}

type StatsTotals = { database: string; version: string; total: AdminStatsFigures };

export function proxyAdminSource(deps: ProxySourceDeps): ProxyAdminSource {
  const { sessions, pooling, ledger, catalogs } = deps;
  const pools = pooling.pools;
  let pausedAll = false;
  const pausedDatabases = new Set<string>();
  const knownDatabases = (): string[] => [...new Set([...catalogs.all().map((c) => c.database), ...pools.stats().map((p) => p.database)])];
  const pooledSessions = () => [...sessions].flatMap((session) => (session.pooled ? [{ session, pooled: session.pooled }] : []));
  /** SHOW STATS per database and version, of the pooled clients that have ended. */
  const endedStats = new Map<string, StatsTotals>();
  const statsOf = (rows: Map<string, StatsTotals>, session: Session): StatsTotals => rowOf(rows, session.database ?? '', session.versionSchema ?? '');
  const rowOf = (rows: Map<string, StatsTotals>, database: string, version: string): StatsTotals => {
    const id = `${database}\0${version}`;
    let row = rows.get(id);
    if (!row) {
      row = { database, version, total: zeroFigures() };
      rows.set(id, row);
    }
    return row;
  };
  const addFigures = (total: AdminStatsFigures, session: Session, pooled: NonNullable<Session['pooled']>) => {
    total.serverAssignmentCount += pooled.transactions;
    total.xactCount += pooled.transactions;
    total.queryCount += session.queries;
    total.received += session.bytesIn;
    total.sent += session.bytesOut;
    total.xactTimeUs += pooled.heldMicros;
    total.queryTimeUs += pooled.requestMicros;
    total.waitTimeUs += pooled.waitedMicros;
  };
  // Performance-clock times of the pool (openedAt, changedAt) as wall-clock dates.
  const wallClock = (at: number) => new Date(Date.now() - (performance.now() - at));
  const upstreamAddress = 'socketPath' in deps.upstream ? { addr: 'unix', port: 0 } : { addr: (deps.upstream as { host: string }).host, port: (deps.upstream as { port: number }).port };

  return {
    pools(): AdminPoolRow[] {
      const clients = pooledSessions();
      return pools.stats().map((stats) => {
        const mine = clients.filter(({ pooled }) => pooled.key.database === stats.database && pooled.key.user === stats.user && pooled.key.version === stats.version && pooled.key.searchPath === stats.searchPath);
        return {
          database: stats.database,
          user: stats.user,
          version: stats.version,
          clientsActive: mine.filter(({ pooled }) => pooled.waitingSince === 0).length,
          clientsWaiting: mine.filter(({ pooled }) => pooled.waitingSince > 0).length,
          serversActive: stats.active,
          serversIdle: stats.idle,
          serversUsed: stats.used,
          serversTested: 0,
          serversLogin: stats.opening,
          maxWaitMs: stats.maxWaitMs,
          poolMode: deps.options.mode,
          paused: stats.paused,
        };
      });
    },
    clients(): AdminClientRow[] {
      return pooledSessions().map(({ session, pooled }) => {
        const { host: addr, port } = splitHostPort(session.clientAddress);
        const { localAddress, localPort, tls } = session.clientSocket;
        const server = pooled.server;
        return {
          user: session.user ?? '',
          database: session.database ?? '',
          version: session.versionSchema ?? '',
          addr,
          port,
          localAddr: localAddress,
          localPort,
          connectTime: new Date(session.startedAt),
          requestTime: session.lastQueryAt > 0 ? new Date(session.lastQueryAt) : undefined,
          link: server?.id,
          tls,
          applicationName: pooled.parameter('application_name') ?? '',
          preparedStatements: pooled.preparedStatements,
          id: session.id,
          state: pooled.waitingSince > 0 ? 'waiting' : server ? 'active' : 'idle',
          waitMs: pooled.waitingSince > 0 ? Date.now() - pooled.waitingSince : 0,
          pinned: pooled.pinned?.detail ?? '',
        };
      });
    },
    servers(): AdminServerRow[] {
      // The native thread holds its connections between its clients' transactions: lent to it, they
      // are active only while one of its clients holds one.
      const inThread = nativeConnectionIds(pools);
      const heldBy = new Map<number, number>();
      const applicationNames = new Map<number, string>();
      for (const { session, pooled } of pooledSessions()) {
        const server = pooled.server;
        if (!server) continue;
        heldBy.set(server.id, session.id);
        applicationNames.set(server.id, pooled.parameter('application_name') ?? '');
      }
      return pools.servers().map(({ key, state, connection, openedAt, changedAt, closeNeeded }) => ({
        user: key.user,
        database: key.database,
        version: key.version,
        addr: upstreamAddress.addr,
        port: upstreamAddress.port,
        localAddr: '',
        localPort: connection.session.localPort ?? 0,
        connectTime: wallClock(openedAt),
        requestTime: wallClock(changedAt),
        link: heldBy.get(connection.id) ?? connection.client,
        tls: '',
        // PgBouncer's: the application_name of the client it serves now.
        applicationName: applicationNames.get(connection.id) ?? '',
        preparedStatements: connection.statements.size,
        id: connection.id,
        state: inThread.has(connection.id) && !heldBy.has(connection.id) ? 'idle' : state,
        remotePid: connection.session.backendKey?.readInt32BE(0) ?? 0,
        closeNeeded,
      }));
    },
    /** Since the proxy started: the clients connected now and those that have ended. */
    stats(): AdminStatsRow[] {
      const rows = new Map<string, StatsTotals>();
      for (const [id, ended] of endedStats) rows.set(id, { ...ended, total: { ...ended.total } });
      for (const { session, pooled } of pooledSessions()) addFigures(statsOf(rows, session).total, session, pooled);
      const seconds = Math.max(1, (Date.now() - deps.startedAt) / 1000);
      const perSecond = (value: number) => Math.round(value / seconds);
      return [...rows.values()].map(({ database, version, total }) => ({
        database,
        version,
        total,
        average: {
          serverAssignmentCount: perSecond(total.serverAssignmentCount),
          xactCount: perSecond(total.xactCount),
          queryCount: perSecond(total.queryCount),
          received: perSecond(total.received),
          sent: perSecond(total.sent),
          xactTimeUs: total.xactCount > 0 ? Math.round(total.xactTimeUs / total.xactCount) : 0,
          queryTimeUs: total.queryCount > 0 ? Math.round(total.queryTimeUs / total.queryCount) : 0,
          waitTimeUs: total.serverAssignmentCount > 0 ? Math.round(total.waitTimeUs / total.serverAssignmentCount) : 0,
        },
      }));
    },
    sessionEnded(session: Session): void {
      const pooled = session.poolUse;
      if (pooled) addFigures(statsOf(endedStats, session).total, session, pooled);
    },
    briefEnded(database: string, version: string, counters: Float64Array): void {
      const total = rowOf(endedStats, database, version).total;
      const figure = (slot: number) => counters[slot] ?? 0;
      total.serverAssignmentCount += figure(Counter.Transactions);
      total.xactCount += figure(Counter.Transactions);
      total.queryCount += figure(Counter.Queries);
      total.received += figure(Counter.BytesIn);
      total.sent += figure(Counter.BytesOut);
      total.xactTimeUs += Math.round(figure(Counter.HeldMicros));
      total.queryTimeUs += Math.round(figure(Counter.RequestMicros));
      total.waitTimeUs += Math.round(figure(Counter.WaitedMicros));
    },
    versions(): AdminVersionRow[] {
      const live = new Map(catalogs.all().map((catalog) => [catalog.database, new Set(catalog.cached().map((v) => v.versionSchema))]));
      const rows: AdminVersionRow[] = ledger.snapshot().versions.map((used) => ({
        database: used.database,
        version: used.version,
        clients: used.clients,
        queries: used.queries,
        lastQuery: used.lastQueryAt ? new Date(used.lastQueryAt) : undefined,
        retired: used.version !== '' && !(live.get(used.database)?.has(used.version) ?? false),
      }));
      for (const catalog of catalogs.all()) {
        for (const version of catalog.cached()) {
          if (!rows.some((row) => row.database === catalog.database && row.version === version.versionSchema)) {
            rows.push({ database: catalog.database, version: version.versionSchema, clients: 0, queries: 0, lastQuery: undefined, retired: false });
          }
        }
      }
      return rows;
    },
    config(): AdminConfigRow[] {
      const { settings } = deps.options;
      const row = (key: string, value: string | number, initial: string | number): AdminConfigRow => ({ key, value: String(value), default: String(initial), changeable: false });
      return [
        row('pool_mode', deps.options.mode, 'none'),
        row('auth_type', deps.options.authType, 'md5'),
        row('auth_file', deps.options.authFile ?? '', ''),
        row('auth_query', deps.options.authQuery ?? '', ''),
        row('default_pool_size', settings.poolSize, 20),
        row('min_pool_size', settings.minPoolSize, 0),
        row('reserve_pool_size', settings.reservePoolSize, 0),
        row('reserve_pool_timeout', settings.reservePoolTimeoutMs / 1000, 5),
        row('max_db_connections', settings.maxDbConnections, 0),
        row('max_user_connections', settings.maxUserConnections, 0),
        row('server_idle_timeout', settings.serverIdleTimeoutMs / 1000, 600),
        row('server_lifetime', settings.serverLifetimeMs / 1000, 3600),
        row('query_wait_timeout', settings.queryWaitTimeoutMs / 1000, 120),
        row('idle_transaction_timeout', deps.options.idleTransactionTimeoutMs / 1000, 0),
        row('server_reset_query', settings.serverResetQuery, 'DISCARD ALL'),
        row('max_prepared_statements', deps.options.maxPreparedStatements, 200),
        row('ignore_startup_parameters', (deps.options.ignoreStartupParameters ?? []).join(','), ''),
        row('track_extra_parameters', (deps.options.trackExtraParameters ?? []).join(','), ''),
      ];
    },
    databases: knownDatabases,
    databaseRows(): AdminDatabaseRow[] {
      const { settings } = deps.options;
      const disabled = new Set(pooling.disabledDatabases());
      const clients = countBy(pooledSessions(), ({ session }) => session.database ?? '');
      return knownDatabases().map((name) => ({
        name,
        host: upstreamAddress.addr,
        port: upstreamAddress.port,
        database: name,
        poolSize: settings.poolSize,
        minPoolSize: settings.minPoolSize,
        reservePoolSize: settings.reservePoolSize,
        serverLifetimeSeconds: settings.serverLifetimeMs / 1000,
        poolMode: deps.options.mode,
        maxConnections: settings.maxDbConnections,
        currentConnections: pools.databaseConnections(name),
        currentClientConnections: clients.get(name) ?? 0,
        paused: pausedAll || pausedDatabases.has(name),
        disabled: disabled.has(name),
      }));
    },
    users(): AdminUserRow[] {
      const { settings } = deps.options;
      const connections = new Map(pools.userConnections().map(({ user, connections }) => [user, connections]));
      const names = [...new Set(pools.stats().map((pool) => pool.user))];
      const clients = countBy(pooledSessions(), ({ session }) => session.user ?? '');
      return names.map((name) => ({
        name,
        poolSize: settings.poolSize,
        reservePoolSize: settings.reservePoolSize,
        poolMode: deps.options.mode,
        maxUserConnections: settings.maxUserConnections,
        currentConnections: connections.get(name) ?? 0,
        currentClientConnections: clients.get(name) ?? 0,
      }));
    },
    lists(): AdminListCounts {
      const poolStats = pools.stats();
      const databases = knownDatabases();
      let loginClients = 0;
      for (const session of sessions) if (session.phase === 'startup' || session.phase === 'routing' || session.phase === 'auth') loginClients++;
      return {
        databases: databases.length,
        users: new Set(poolStats.map((pool) => pool.user)).size,
        pools: poolStats.length,
        usedClients: pooledSessions().length,
        loginClients,
        usedServers: databases.reduce((total, database) => total + pools.databaseConnections(database), 0),
      };
    },
    pauseState(): AdminPauseState {
      return { all: pausedAll, databases: [...pausedDatabases] };
    },
    reconnect(database) {
      pools.reconnect(database);
    },
    waitClose: (database) => pools.waitClose(database),
    disable(database) {
      pooling.disable(database);
      deps.forgetNativeLogins(database);
    },
    enable(database) {
      pooling.enable(database);
    },
    async pause(database) {
      const targets = database === undefined ? knownDatabases() : [database];
      if (database === undefined) pausedAll = true;
      else pausedDatabases.add(database);
      await Promise.all(targets.map((name) => pools.pause(name)));
    },
    resume(database) {
      const targets = database === undefined ? knownDatabases() : [database];
      if (database === undefined) {
        pausedAll = false;
        pausedDatabases.clear();
      } else pausedDatabases.delete(database);
      for (const name of targets) pools.resume(name);
    },
    reload: deps.reload,
    kill(database) {
      for (const session of [...sessions]) {
        if (session.pooled && (database === undefined || session.database === database)) deps.kill(session);
      }
      const targets = database === undefined ? knownDatabases() : [database];
      if (database === undefined) pausedAll = true;
      else pausedDatabases.add(database);
      // Paused until RESUME, as PgBouncer's KILL leaves it; the pause closes every connection once the killed clients' are back.
      for (const name of targets) void pools.pause(name);
    },
    shutdown: deps.shutdown,
  };
}

/** How many of `items` each key has. */
function countBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) {
    const key = keyOf(item);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function zeroFigures(): AdminStatsFigures {
  return { serverAssignmentCount: 0, xactCount: 0, queryCount: 0, received: 0, sent: 0, xactTimeUs: 0, queryTimeUs: 0, waitTimeUs: 0 };
}
