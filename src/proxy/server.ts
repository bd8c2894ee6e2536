/**
 * The proxy process: accepts client connections, admits or refuses them, hands each to a Session,
 * and owns what sessions share (version catalogs, cancel keys, usage, metrics, heartbeats, HTTP).
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import type tls from 'node:tls';
import { startHttpServer, type HttpServer, type Readiness } from '../observe/http.js';
import { TandemError } from '../errors/index.js';
import { redactUrl } from '../observe/logger.js';
import { renderStatusPage, type RolloutView } from '../observe/status-page.js';
import { CancelRegistry } from './cancel.js';
import { ChurnSet } from './churn.js';
import { Catalogs, type RetiredVersion } from './catalog.js';
import { formatHostPort, type HostPort, type ProxyOptions } from './config.js';
import { HeartbeatLoop } from './heartbeat.js';
import { ProxyMetrics } from './metrics.js';
import { Counter, selectForwarder, type NativeForwarder } from './native.js';
import type { ErrorFields } from './protocol/messages.js';
import { describeCloseReason } from './session/close-reason.js';
import { Session, type SessionContext } from './session/session.js';
import { loadServerTls } from './tls.js';
import { describeTarget, upstreamTarget } from './upstream.js';
import { QueryRates, UsageLedger } from './usage.js';
import type { Secret } from './auth/secret.js';
import type { PoolStats } from './pool/pool.js';
import { loadPinningParser } from './pool/pinning.js';
import { ProxyPooling } from './pooling.js';
import { proxyAdminSource } from './admin/proxy-source.js';
import { AdminUsers } from './admin/users.js';
import { UpstreamGuard } from './upstream-check.js';
import { nativePoolCount, nativeWaits } from './session/native-pooled.js';
import { NativeLogins, type NativeLoginHooks } from './session/native-login.js';

/**
 * Beyond max-client-conn the proxy still reads a startup packet to answer with a proper error; past
 * this many sockets in total it just closes new ones, so a flood cannot exhaust memory or descriptors.
 */
const HARD_LIMIT_FACTOR = 2;
const HARD_LIMIT_SLACK = 100;

/** Queries per second are averaged over this window. */
const RATE_WINDOW_MS = 5_000;
/** How often passthrough's kept passwords of users without clients are looked at (pooling.ts forgets them). */
const FORGET_SWEEP_MS = 30_000;
/** How often an open status page fetches itself again. */
const PAGE_REFRESH_SECONDS = 5;

export interface ProxyStatus {
  proxyId: string;
  listen: string;
  upstream: string;
  uptimeSeconds: number;
  draining: boolean;
  /** Who forwards plain-TCP sessions after login. */
  forwarder: 'native' | 'node';
  clients: number;
  /** `none`, or the pool mode. */
  poolMode: 'none' | 'session' | 'transaction';
  /** Per pool (pooled modes): its connections and waiting clients. */
  pools: PoolStats[];
  /** Pooled modes: the per-user limit (0: none) and each user's server connections across its pools. */
  users: { maxUserConnections: number; connections: Array<{ user: string; connections: number }> } | null;
  /** Per database, per version schema ('' = server defaults): live clients, queries (total and per second), last query. */
  databases: Record<
    string,
    { versions: string[]; clients: Record<string, { clients: number; queries: number; queriesPerSecond: number | null; lastQueryAt: string | null }> }
  >;
}

/** What /status serves: this proxy's status and, when the proxy can read it, the rollout across all proxies. */
export interface ProxyStatusDocument extends ProxyStatus {
  rollout: RolloutView | { error: string } | null;
}

export interface Proxy {
  readonly proxyId: string;
  readonly address: HostPort;
  readonly httpAddress: HostPort | undefined;
  readonly metrics: ProxyMetrics;
  readonly forwarder: 'native' | 'node';
  status(): ProxyStatus;
  readiness(): Promise<Readiness>;
  /** Writes the heartbeat rows now (the loop does it every interval). */
  heartbeat(): Promise<void>;
  /** Re-reads every version list now (as a notification would). */
  refreshVersions(): Promise<void>;
  /**
   * Stops accepting, waits up to `graceMs` (default --shutdown-grace) for sessions to end, then ends
   * the rest with 57P01, deletes the heartbeat rows and releases everything. Idempotent; a later
   * call with 0 ends the grace period at once.
   */
  shutdown(graceMs?: number): Promise<void>;
  /** Resolves when shutdown has finished, however it was started. */
  readonly closed: Promise<void>;
}

export async function startProxy(options: ProxyOptions): Promise<Proxy> {
  const logger = options.logger;
  const upstream = upstreamTarget(options.postgresUrl, options.serverConnectTimeoutMs);
  const secureContext: tls.SecureContext | undefined =
    options.tlsCert && options.tlsKey ? loadServerTls(options.tlsCert, options.tlsKey) : undefined;
  // Before anything listens: `--forwarder native` without the addon is a startup failure.
  const forwarding = selectForwarder(options.forwarder ?? 'auto');
  const forwarderName = forwarding.forwarder ? 'native' : 'node';
  const nativeLogins = options.nativeLogin ? nativeLoginsFor(options, forwarding.forwarder) : undefined;
  const proxyId = options.proxyId ?? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const startedAt = new Date();
  const ledger = new UsageLedger();
  // Read at scrape time only, after everything below exists.
  const metrics = new ProxyMetrics(ledger, {
    versions: () => catalogs.all().map((catalog) => ({ database: catalog.database, versions: catalog.cached() })),
    ready: async () => (await readiness()).ready,
  });
  const rates = new QueryRates();
  rates.sample(ledger.snapshot());
  const rateSampler = setInterval(() => rates.sample(ledger.snapshot()), RATE_WINDOW_MS).unref();
  const sessions = new ChurnSet<Session>();
  /**
   * Sessions that hold one of the --max-client-conn places: taken when the socket is accepted, so
   * that sockets that never send a startup packet count too; a socket accepted while all places
   * were taken gets one when its startup packet arrives if one is free by then, else 53300.
   */
  const admitted = new ChurnSet<Session>();
  const admit = (session: Session): void => {
    admitted.add(session);
    nativeLogins?.setAdmitted(admitted.size);
  };
  /** Places taken: admitted sessions, and native logins not reported yet. */
  const placesTaken = (): number => admitted.size + (nativeLogins?.inFlight ?? 0);
  /** The retired versions' messages, for a native login the thread made just before it heard. */
  const retiredMessages = new Map<string, string>();
  const cancelKeys = new CancelRegistry(upstream, logger);
  let draining = false;

  const onRetired = (retired: RetiredVersion[]) => {
    for (const gone of retired) {
      retiredMessages.set(`${gone.database}\0${gone.versionSchema}`, gone.message);
      nativeLogins?.forgetVersion(gone.database, gone.versionSchema);
      logger.info({ database: gone.database, version: gone.versionSchema }, 'version retired; its sessions will be closed on their next message');
      for (const session of sessions) {
        if (session.database === gone.database && session.versionSchema === gone.versionSchema) session.retire(gone.message);
      }
      // Its pools: waiting clients fail, idle connections close now, lent ones when they come back.
      for (const pool of pooling?.pools.stats() ?? []) {
        if (pool.database === gone.database && pool.version === gone.versionSchema) void pooling!.pools.retire(pool);
      }
    }
  };
  const catalogs = new Catalogs({
    postgresUrl: options.postgresUrl,
    stateSchema: options.stateSchema,
    schema: options.schema,
    ttlMs: options.versionCacheTtlMs,
    logger,
    onRetired,
    onLoaded: (database, versions) => nativeLogins?.versionsLoaded(database, versions),
  });
  // Native logins do not read the version lists: the lists they depend on are refreshed on the TTL, as logins would.
  const learnedRefresher = setInterval(() => {
    for (const database of nativeLogins?.databases() ?? []) catalogs.get(database).versions().catch(() => {});
  }, options.versionCacheTtlMs).unref();
  const homeDatabase = decodeURIComponent(new URL(options.postgresUrl).pathname.slice(1)) || new URL(options.postgresUrl).username || 'postgres';
  const proxyLogin = ownLogin(options.postgresUrl, homeDatabase);
  const upstreamGuard = new UpstreamGuard(upstream, proxyLogin, (result) => {
    if (result.ok === true) logger.info({ upstream: describeTarget(upstream) }, 'upstream check passed: the search_path startup parameter reaches PostgreSQL');
    else if (result.ok === false) logger.error({ upstream: describeTarget(upstream), err: result.error.message, detail: result.error.detail }, 'upstream check failed: versioned connections are refused');
    else logger.warn({ upstream: describeTarget(upstream), err: result.reason }, 'upstream check could not run; it runs again at the next versioned login');
  });
  const pooling = options.pooling ? new ProxyPooling(options.pooling, upstream, proxyLogin, metrics, logger) : undefined;
  // Passthrough keeps the passwords the server accepted: only while their users have clients here.
  const forgetter = setInterval(() => {
    if (pooling?.authType !== 'passthrough') return;
    pooling.forgetAbsentUsers(new Set([...sessions].flatMap((session) => (session.user === undefined ? [] : [session.user]))));
  }, FORGET_SWEEP_MS).unref();
  if (pooling) {
    await pooling.loadAuthFile();
    // The parser that tells which statements pin a client (WASM, loaded once).
    if (pooling.mode === 'transaction') await loadPinningParser();
    metrics.poolStats = () => pooling.pools.stats();
    metrics.nativePoolWaits = () => nativeWaits(pooling.pools);
    metrics.nativePools = () => nativePoolCount(pooling.pools);
  }
  if (nativeLogins) metrics.nativeLogins = () => nativeLogins.counts();

  const adminUsers = options.adminUsers?.length ? AdminUsers.parse(options.adminUsers.join(','), '--admin-users') : undefined;
  const adminSource =
    pooling && adminUsers
      ? proxyAdminSource({
          sessions,
          pooling,
          options: options.pooling!,
          ledger,
          catalogs,
          upstream,
          startedAt: startedAt.getTime(),
          kill: (session) => session.terminate({ kind: 'shutdown', error: { severity: 'FATAL', code: '57P01', message: 'terminating connection: killed from the tandem admin console (KILL)' } }),
          reload: async () => {
            await pooling.loadAuthFile();
            await Promise.all(catalogs.all().map((c) => c.refresh().catch(() => [])));
            logger.info('admin console: RELOAD (auth file and version lists re-read)');
          },
          // After the reply to SHUTDOWN has gone out.
          shutdown: () => setImmediate(() => void shutdown(0)),
          forgetNativeLogins: (database) => nativeLogins?.forgetDatabase(database),
        })
      : undefined;

  const context: SessionContext = {
    tls: secureContext,
    loginTimeoutMs: options.clientLoginTimeoutMs,
    routing: { defaultVersion: options.defaultVersion, schema: options.schema },
    upstream,
    catalogs,
    metrics,
    logger,
    forwarder: forwarding.forwarder,
    pooling,
    nativeLogins,
    upstreamCheck: () => upstreamGuard.check(),
    upstreamUnreachable: () => upstreamGuard.reset(),
    admin: adminSource && adminUsers ? { database: options.adminDatabase ?? 'tandem', users: adminUsers, source: adminSource } : undefined,
    admissionError(session): ErrorFields | undefined {
      if (draining) {
        metrics.reject('shutting_down');
        return { severity: 'FATAL', code: '57P03', message: 'the tandem proxy is shutting down', hint: 'Reconnect; another proxy instance or this one after restart will take the connection.' };
      }
      // Admitted sessions, logged in or still logging in, each hold (or will hold) a server connection.
      if (admitted.has(session)) return undefined;
      if (placesTaken() >= options.maxClientConn) {
        metrics.reject('max_client_conn');
        return { severity: 'FATAL', code: '53300', message: `sorry, too many clients already: the tandem proxy serves at most ${options.maxClientConn} (--max-client-conn)` };
      }
      admit(session);
      return undefined;
    },
    cancel(key, from) {
      metrics.connection('cancel');
      return cancelKeys.cancel(key, from);
    },
    registerCancelKey(key, session, upstreamKey) {
      cancelKeys.add(key, session, upstreamKey);
    },
    ready(session) {
      metrics.connection('established');
      // The lines of every connection: their fields are not even gathered below their level (a login per transaction with -C).
      if (!logger.isLevelEnabled('info')) return;
      logger.info(
        { event: 'open', session: session.id, client: session.clientAddress, user: session.user, database: session.database, version: session.versionSchema ?? null },
        'client connected',
      );
    },
    closed(session, reason) {
      sessions.delete(session);
      adminSource?.sessionEnded(session);
      admitted.delete(session);
      nativeLogins?.setAdmitted(admitted.size);
      ledger.remove(session);
      if (session.cancelKey) cancelKeys.remove(session.cancelKey, session);
      if (!session.cancelKey && reason.kind !== 'cancel_request') metrics.connection('failed');
      // Cancel requests are connections too, but one line each would drown the sessions' lines.
      const level = reason.kind === 'cancel_request' ? 'debug' : 'info';
      if (logger.isLevelEnabled(level)) {
        logger[level](
          {
            event: 'close',
            session: session.id,
            client: session.clientAddress,
            user: session.user,
            database: session.database,
            version: session.versionSchema ?? null,
            durationMs: Date.now() - session.startedAt,
            bytesIn: session.bytesIn,
            bytesOut: session.bytesOut,
            queries: session.queries,
            forwarder: session.forwardedBy ?? null,
            reason: describeCloseReason(reason),
          },
          'client disconnected',
        );
      }
      if (draining && sessions.size === 0) drained?.();
    },
  };

  /** A client connection to log in; `held`: what the native listener read of it already. */
  const accept = (socket: net.Socket, held?: Buffer): void => {
    if (draining || sessions.size >= options.maxClientConn * HARD_LIMIT_FACTOR + HARD_LIMIT_SLACK) {
      metrics.reject(draining ? 'shutting_down' : 'max_client_conn');
      logger.warn({ client: `${socket.remoteAddress}:${socket.remotePort}`, open: sessions.size }, 'connection closed unread: proxy is over its hard limit or shutting down');
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const session = new Session(socket, context, held);
    sessions.add(session);
    if (placesTaken() < options.maxClientConn) admit(session);
    ledger.add(session);
  };
  const server = net.createServer({ noDelay: true, keepAlive: true }, (socket) => accept(socket));
  const nativeLoginHooks: NativeLoginHooks = {
    accepted: (fd, held) => accept(new net.Socket({ fd, readable: true, writable: true }), held),
    loggedIn: (learned, login) => {
      const session = new Session(undefined, context, undefined, { learned, login });
      sessions.add(session);
      admit(session);
      ledger.add(session);
      context.ready(session);
      // Retired after the thread made this login and before it heard: told at the client's first message.
      const version = learned.version?.versionSchema;
      const live = catalogs.get(learned.database).cached();
      if (version !== undefined && !live.some((v) => v.versionSchema === version)) {
        session.retire(retiredMessages.get(`${learned.database}\0${version}`) ?? `version "${version}" of database "${learned.database}" has been retired`);
      }
    },
    brief: (learned, clients, counters) => {
      metrics.connection('established', clients);
      const used = { bytesIn: counters[Counter.BytesIn] ?? 0, bytesOut: counters[Counter.BytesOut] ?? 0, queries: counters[Counter.Queries] ?? 0, lastQueryAt: counters[Counter.LastQueryAt] ?? 0 };
      ledger.addEnded(learned.database, learned.version?.versionSchema, used);
      adminSource?.briefEnded(learned.database, learned.version?.versionSchema ?? '', counters);
      learned.pool.visited();
    },
  };
  /** The client listener's address, once bound. */
  let address: HostPort | undefined;

  const status = (): ProxyStatus => {
    const snapshot = ledger.snapshot();
    const databases: ProxyStatus['databases'] = {};
    for (const catalog of catalogs.all()) databases[catalog.database] = { versions: catalog.cached().map((v) => v.versionSchema), clients: {} };
    for (const used of snapshot.versions) {
      const entry = (databases[used.database] ??= { versions: [], clients: {} });
      entry.clients[used.version] = {
        clients: used.clients,
        queries: used.queries,
        queriesPerSecond: rates.perSecond(used.database, used.version),
        lastQueryAt: used.lastQueryAt ? new Date(used.lastQueryAt).toISOString() : null,
      };
    }
    return {
      proxyId,
      listen: formatHostPort(address ?? options.listen),
      upstream: describeTarget(upstream),
      uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
      draining,
      forwarder: forwarderName,
      poolMode: options.pooling?.mode ?? 'none',
      pools: pooling?.pools.stats() ?? [],
      users: pooling ? { maxUserConnections: options.pooling!.settings.maxUserConnections, connections: pooling.pools.userConnections() } : null,
      clients: sessions.size,
      databases,
    };
  };

  const statusDocument = async (): Promise<ProxyStatusDocument> => {
    const rollout = options.rollout ? await options.rollout().catch((error: Error) => ({ error: error.message })) : null;
    return { ...status(), rollout };
  };
  const page = async (): Promise<string> => {
    const document = await statusDocument();
    return renderStatusPage({ title: `proxy ${proxyId}`, generatedAt: new Date(), refreshSeconds: PAGE_REFRESH_SECONDS, rollout: document.rollout, proxy: document });
  };

  const readiness = async (): Promise<Readiness> => {
    if (draining) return { ready: false, detail: { reason: 'shutting down' } };
    if (!address) return { ready: false, detail: { reason: 'starting' } };
    const refusal = await upstreamGuard.check();
    if (refusal) return { ready: false, detail: { upstream: describeTarget(upstream), reason: refusal.message, detail: refusal.detail, hint: refusal.hint } };
    try {
      const versions = await catalogs.get(homeDatabase).refresh();
      return { ready: true, detail: { upstream: describeTarget(upstream), database: homeDatabase, versions: versions.length } };
    } catch (error) {
      return { ready: false, detail: { upstream: describeTarget(upstream), database: homeDatabase, reason: (error as Error).message } };
    }
  };

  // Every listener is bound before anything starts, HTTP first so that no client is accepted by a
  // proxy about to give up: a busy or forbidden address ends startup with nothing left running (no
  // session, no heartbeat row, no open connection), and the error names the address.
  let http: HttpServer | undefined;
  try {
    if (options.http) {
      const where = options.http;
      http = await startHttpServer(where, { readiness, metrics: () => metrics.text(), status: statusDocument, page }, logger).catch((error: Error) => {
        throw listenError(where, '--http', error);
      });
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: Error) => reject(listenError(options.listen, '--listen', error)));
      server.listen(options.listen.port, options.listen.host, () => {
        server.removeAllListeners('error');
        resolve();
      });
    });
  } catch (error) {
    clearInterval(rateSampler);
    await http?.close();
    await catalogs.close();
    throw error;
  }
  server.on('error', (error) => logger.error({ err: error.message }, 'listener error'));
  const bound = server.address() as net.AddressInfo;
  address = { host: bound.address, port: bound.port };
  if (nativeLogins) {
    // The thread accepts from here, on its duplicate of the socket, which stays listening when Node closes its own.
    // With no line per client to log, a client gone before the thread reports it is only counted.
    nativeLogins.listen(listeningDescriptor(server), options.maxClientConn, Boolean(secureContext), nativeLoginHooks, !logger.isLevelEnabled('info'));
    server.close();
  }

  const heartbeats = new HeartbeatLoop(
    { proxyId, hostname: os.hostname(), pid: process.pid, listen: formatHostPort(address), schema: options.schema, stateSchema: options.stateSchema, startedAt },
    catalogs,
    ledger,
    { intervalMs: options.heartbeatIntervalMs, expireAfterMs: options.heartbeatExpireMs, homeDatabase, logger },
  );
  heartbeats.start();
  void heartbeats.beat();

  let drained: (() => void) | undefined;
  let closing: Promise<void> | undefined;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));

  let cutGrace: (() => void) | undefined;
  const shutdown = (graceMs = options.shutdownGraceMs): Promise<void> => {
    if (closing) {
      if (graceMs === 0) cutGrace?.();
      return closing;
    }
    closing = (async () => {
      draining = true;
      logger.info({ sessions: sessions.size, graceMs }, 'shutting down: no new connections; waiting for sessions to end');
      nativeLogins?.stop();
      const stopped = nativeLogins ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()));
      if (sessions.size > 0) {
        await new Promise<void>((resolve) => {
          drained = resolve;
          cutGrace = resolve;
          setTimeout(resolve, graceMs).unref();
        });
      }
      if (sessions.size > 0) {
        logger.info({ sessions: sessions.size }, 'grace period over: closing the remaining sessions');
        const error: ErrorFields = { severity: 'FATAL', code: '57P01', message: 'terminating connection: the tandem proxy is shutting down', hint: 'Reconnect.' };
        for (const session of [...sessions]) session.terminate({ kind: 'shutdown', error });
      }
      await stopped;
      clearInterval(rateSampler);
      clearInterval(forgetter);
      clearInterval(learnedRefresher);
      await withTimeout(pooling?.close() ?? Promise.resolve(), options.serverConnectTimeoutMs);
      await withTimeout(heartbeats.stop(), options.serverConnectTimeoutMs);
      await catalogs.close();
      await http?.close();
      logger.info({ proxyId }, 'proxy stopped');
      markClosed();
    })();
    return closing;
  };

  logger.info(
    {
      listen: formatHostPort(address),
      upstream: describeTarget(upstream),
      http: http ? formatHostPort(http) : null,
      tls: Boolean(secureContext),
      forwarder: forwarding.description,
      nativeLogin: Boolean(nativeLogins),
      poolMode: options.pooling?.mode ?? 'none',
      proxyId,
      postgresUrl: redactUrl(options.postgresUrl),
    },
    'tandem proxy listening',
  );

  return {
    proxyId,
    address,
    httpAddress: http ? { host: http.host, port: http.port } : undefined,
    metrics,
    forwarder: forwarderName,
    status,
    readiness,
    heartbeat: () => heartbeats.beat(),
    refreshVersions: async () => {
      await Promise.all(catalogs.all().map((c) => c.refresh().catch(() => [])));
    },
    shutdown,
    closed,
  };
}

/** --native-login on needs what the native thread can log in alone: the native forwarder, transaction mode and trust. */
function nativeLoginsFor(options: ProxyOptions, forwarder: NativeForwarder | undefined): NativeLogins {
  const pooling = options.pooling;
  const missing = [
    ...(forwarder ? [] : ['the native forwarder (--forwarder auto or native, built)']),
    ...(pooling?.mode === 'transaction' ? [] : ['--pool-mode transaction']),
    ...(pooling?.authType === 'trust' ? [] : ['--auth-type trust']),
    ...(pooling && pooling.idleTransactionTimeoutMs > 0 ? ['no --idle-transaction-timeout (its clients stay in Node)'] : []),
  ];
  if (!forwarder || missing.length > 0) throw new Error(`--native-login on needs ${missing.join(', ')}`);
  return new NativeLogins(forwarder);
}

/** The listening socket's descriptor: the same private libuv handle as native.ts's idleDescriptor. */
function listeningDescriptor(server: net.Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('--native-login on: the listening socket has no descriptor');
  return fd;
}

/** A listener that could not be bound, named by its address and flag. */
function listenError(where: HostPort, flag: string, error: Error): TandemError {
  const code = (error as NodeJS.ErrnoException).code;
  const why = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EACCES' ? 'permission denied' : code === 'EADDRNOTAVAIL' ? 'no such local address' : error.message;
  return new TandemError({ kind: 'listen_failed', address: formatHostPort(where), flag, reason: why }, { cause: error });
}

function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    promise.finally(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The proxy's own login, from --postgres-url: runs the auth query and the upstream check. */
function ownLogin(postgresUrl: string, database: string): { user: string; database: string; secret?: Secret } {
  const url = new URL(postgresUrl);
  const user = decodeURIComponent(url.username) || process.env.PGUSER || 'postgres';
  const password = url.password ? decodeURIComponent(url.password) : process.env.PGPASSWORD;
  return { user, database, ...(password ? { secret: { kind: 'plain' as const, password } } : {}) };
}
