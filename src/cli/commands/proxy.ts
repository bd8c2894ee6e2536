import type { Command } from 'commander';
import { UsageError } from '../../errors/index.js';
import { AdminUsers } from '../../proxy/admin/users.js';
import { AUTH_TYPES } from '../../proxy/auth/client-auth.js';
import { DEFAULT_AUTH_QUERY } from '../../proxy/auth/auth-query.js';
import { PROXY_DEFAULTS, parseDuration, parseForwarder, parseHostPort, parseOnOff, type PoolingOptions, type ProxyOptions } from '../../proxy/config.js';
import { readExtraParameters } from '../../proxy/pool/client-parameters.js';
import { DEFAULT_POOL_SETTINGS } from '../../proxy/pool/pool.js';
import { DEFAULT_MAX_PREPARED_STATEMENTS } from '../../proxy/pool/prepared.js';
import { readStatusFrom } from '../../engine/status.js';
import { startProxy } from '../../proxy/server.js';
import type { CliIO } from '../io.js';
import { commonSettings, nonNegativeInteger, positiveInteger } from '../settings.js';

interface RawProxyOptions {
  listen: string;
  http?: string;
  tlsCert?: string;
  tlsKey?: string;
  defaultVersion: string;
  maxClientConn: number;
  shutdownGrace: string;
  clientLoginTimeout: string;
  serverConnectTimeout: string;
  heartbeatInterval: string;
  versionCacheTtl: string;
  forwarder: string;
  nativeLogin: string;
  poolMode: string;
  poolSize: number;
  minPoolSize: number;
  reservePoolSize: number;
  reservePoolTimeout: string;
  maxDbConnections: number;
  serverIdleTimeout: string;
  serverLifetime: string;
  queryWaitTimeout: string;
  idleTransactionTimeout: string;
  serverResetQuery: string;
  maxPreparedStatements: number;
  authType: string;
  authFile?: string;
  authQuery?: string | true;
  adminUsers?: string;
  adminDatabase: string;
  maxUserConnections: number;
  ignoreStartupParameters?: string;
  trackExtraParameters?: string;
}

export function registerProxy(program: Command, io: CliIO): void {
  program
    .command('proxy')
    .description('run the version-routing PostgreSQL proxy: clients connect to app@VERSION')
    .option('--listen <host:port>', 'where clients connect', PROXY_DEFAULTS.listen)
    .option('--http <host:port>', 'serve /healthz, /readyz, /metrics, /status and the status page at / here')
    .option('--tls-cert <file>', 'PEM certificate for TLS from clients (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--default-version <version>', 'version for a database name without @VERSION', PROXY_DEFAULTS.defaultVersion)
    .option('--max-client-conn <n>', 'client connections served at once', positiveInteger('--max-client-conn'), PROXY_DEFAULTS.maxClientConn)
    .option('--shutdown-grace <duration>', 'on SIGTERM, how long sessions may take to end', PROXY_DEFAULTS.shutdownGrace)
    .option('--client-login-timeout <duration>', 'a client must finish logging in within this', PROXY_DEFAULTS.clientLoginTimeout)
    .option('--server-connect-timeout <duration>', 'connecting to PostgreSQL must take no longer', PROXY_DEFAULTS.serverConnectTimeout)
    .option('--heartbeat-interval <duration>', 'how often live clients per version are written to the state schema', PROXY_DEFAULTS.heartbeatInterval)
    .option('--version-cache-ttl <duration>', 're-read versions after this long even without a notification', PROXY_DEFAULTS.versionCacheTtl)
    .option('--forwarder <auto|native|node>', 'who forwards bytes after login: the native epoll thread (plain TCP, Linux) or Node; auto = native when built', PROXY_DEFAULTS.forwarder)
    .option('--native-login <on|off>', 'transaction mode with --auth-type trust: the native thread accepts clients and logs in those whose startup packet it has seen logged in before', PROXY_DEFAULTS.nativeLogin)
    .option('--pool-mode <none|session|transaction>', 'none: one server connection per client, its login relayed to the server; session/transaction: pool server connections (PgBouncer semantics)', PROXY_DEFAULTS.poolMode)
    .option('--pool-size <n>', 'server connections per pool (database, user, version)', nonNegativeInteger('--pool-size'), DEFAULT_POOL_SETTINGS.poolSize)
    .option('--min-pool-size <n>', 'server connections kept open per pool', nonNegativeInteger('--min-pool-size'), DEFAULT_POOL_SETTINGS.minPoolSize)
    .option('--reserve-pool-size <n>', 'extra connections for a pool whose client waited --reserve-pool-timeout', nonNegativeInteger('--reserve-pool-size'), DEFAULT_POOL_SETTINGS.reservePoolSize)
    .option('--reserve-pool-timeout <duration>', 'how long a client waits before the reserve opens', '5s')
    .option('--max-db-connections <n>', 'server connections per database across its pools (0: no limit)', nonNegativeInteger('--max-db-connections'), DEFAULT_POOL_SETTINGS.maxDbConnections)
    .option('--max-user-connections <n>', 'server connections per user across its pools (0: no limit)', nonNegativeInteger('--max-user-connections'), DEFAULT_POOL_SETTINGS.maxUserConnections)
    .option('--server-idle-timeout <duration>', 'close server connections idle this long, and native thread pools without a client (0: never; pools then 10 minutes)', '600s')
    .option('--server-lifetime <duration>', 'close server connections this old when they come back (0: never)', '3600s')
    .option('--query-wait-timeout <duration>', 'a client waiting this long for a server connection gets an error (0: wait forever)', '120s')
    .option('--idle-transaction-timeout <duration>', 'disconnect a client idle inside a transaction this long (0: never)', '0')
    .option('--server-reset-query <sql>', 'run when a session-mode client gives its connection back', DEFAULT_POOL_SETTINGS.serverResetQuery)
    .option('--max-prepared-statements <n>', 'protocol-level prepared statements kept per server connection in transaction mode (LRU)', positiveInteger('--max-prepared-statements'), DEFAULT_MAX_PREPARED_STATEMENTS)
    .option('--auth-type <md5|scram-sha-256|trust|passthrough>', 'how the proxy authenticates clients when it pools (passthrough: the server checks each password)', PROXY_DEFAULTS.authType)
    .option('--auth-file <file>', "users' secrets in PgBouncer's userlist.txt format")
    .option('--auth-query [sql]', "look up users' secrets in the server (default query: pg_catalog.pg_shadow), as the --postgres-url user")
    .option('--track-extra-parameters <names>', 'comma-separated settings a pooled client keeps as its own (from its startup packet and its SET statements) and takes to every server connection, instead of being pinned or refused (PgBouncer\'s track_extra_parameters)')
    .option('--ignore-startup-parameters <names>', 'comma-separated startup parameters (or -c settings in options) a pooled login may send and the proxy drops instead of refusing')
    .option('--admin-users <names>', 'comma-separated users who may use the admin console')
    .option('--admin-database <name>', 'the database name of the admin console', PROXY_DEFAULTS.adminDatabase)
    .action(async (_options: unknown, command: Command) => {
      const settings = commonSettings(command, { logTo: io.stderr, terminalLogFormat: 'pretty' });
      const options = proxyOptions(command.opts<RawProxyOptions>(), settings);
      const proxy = await startProxy(options);
      let stopping = false;
      const onSignal = (signal: NodeJS.Signals) => {
        settings.logger.info({ signal }, stopping ? 'second signal: closing sessions now' : 'signal received: draining');
        // A second signal means "now": it cuts the rest of the grace period short.
        void proxy.shutdown(stopping ? 0 : options.shutdownGraceMs);
        stopping = true;
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      try {
        await proxy.closed;
      } finally {
        process.removeListener('SIGTERM', onSignal);
        process.removeListener('SIGINT', onSignal);
      }
    });
}

function proxyOptions(raw: RawProxyOptions, settings: ReturnType<typeof commonSettings>): ProxyOptions {
  const parse = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  };
  if (Boolean(raw.tlsCert) !== Boolean(raw.tlsKey)) throw new UsageError('--tls-cert and --tls-key go together: give both or neither');
  const heartbeatIntervalMs = parse(() => parseDuration(raw.heartbeatInterval, '--heartbeat-interval'));
  return {
    listen: parse(() => parseHostPort(raw.listen, '--listen')),
    http: raw.http ? parse(() => parseHostPort(raw.http!, '--http')) : undefined,
    postgresUrl: parse(() => proxyUrl(settings.postgresUrl)),
    tlsCert: raw.tlsCert,
    tlsKey: raw.tlsKey,
    defaultVersion: raw.defaultVersion,
    maxClientConn: raw.maxClientConn,
    shutdownGraceMs: parse(() => parseDuration(raw.shutdownGrace, '--shutdown-grace')),
    clientLoginTimeoutMs: parse(() => parseDuration(raw.clientLoginTimeout, '--client-login-timeout')),
    serverConnectTimeoutMs: parse(() => parseDuration(raw.serverConnectTimeout, '--server-connect-timeout')),
    heartbeatIntervalMs,
    heartbeatExpireMs: Math.max(heartbeatIntervalMs * 120, 600_000),
    versionCacheTtlMs: parse(() => parseDuration(raw.versionCacheTtl, '--version-cache-ttl')),
    forwarder: parse(() => parseForwarder(raw.forwarder, '--forwarder')),
    nativeLogin: parse(() => parseOnOff(raw.nativeLogin, '--native-login')),
    pooling: poolingOptions(raw, parse),
    adminUsers: adminUsers(raw, parse),
    adminDatabase: raw.adminDatabase,
    schema: settings.schema,
    stateSchema: settings.stateSchema,
    logger: settings.logger,
    rollout: () => readStatusFrom(settings.postgresUrl, settings.stateSchema, settings.schema),
  };
}

function adminUsers(raw: RawProxyOptions, parse: <T>(fn: () => T) => T): string[] {
  if (!raw.adminUsers) return [];
  if (raw.poolMode.trim() === 'none') throw new UsageError('--admin-users needs --pool-mode session or transaction: the proxy authenticates admin console users itself, with --auth-type and --auth-file/--auth-query (or the server, with --auth-type passthrough)');
  parse(() => AdminUsers.parse(raw.adminUsers!, '--admin-users'));
  return raw.adminUsers.split(',').map((name) => name.trim()).filter(Boolean);
}

function poolingOptions(raw: RawProxyOptions, parse: <T>(fn: () => T) => T): PoolingOptions | undefined {
  const mode = raw.poolMode.trim();
  if (mode !== 'none' && mode !== 'session' && mode !== 'transaction') throw new UsageError(`--pool-mode must be none, session or transaction, got "${raw.poolMode}"`);
  const authType = AUTH_TYPES.find((type) => type === raw.authType.trim());
  if (!authType) throw new UsageError(`--auth-type must be one of ${AUTH_TYPES.join(', ')}, got "${raw.authType}"`);
  if (authType === 'passthrough') {
    if (mode === 'none') throw new UsageError('--auth-type passthrough needs --pool-mode session or transaction: with --pool-mode none every login is relayed to the server already');
    if (raw.authFile || raw.authQuery) throw new UsageError('--auth-type passthrough takes no --auth-file or --auth-query: the server checks every password itself');
  }
  if (mode === 'none') {
    if (raw.trackExtraParameters) throw new UsageError('--track-extra-parameters needs --pool-mode session or transaction: with --pool-mode none every client has its own server session');
    if (raw.ignoreStartupParameters) throw new UsageError('--ignore-startup-parameters needs --pool-mode session or transaction: with --pool-mode none every startup parameter goes to the server as it is');
    if (raw.authFile || raw.authQuery) throw new UsageError('--auth-file and --auth-query need --pool-mode session or transaction: with --pool-mode none the server authenticates each client itself');
    return undefined;
  }
  if ((authType === 'md5' || authType === 'scram-sha-256') && !raw.authFile && raw.authQuery === undefined) {
    throw new UsageError(`--auth-type ${authType} needs the users' secrets: give --auth-file, --auth-query, or both`);
  }
  const duration = (text: string, flag: string) => parse(() => parseDuration(text, flag));
  return {
    mode,
    settings: {
      poolSize: raw.poolSize,
      minPoolSize: raw.minPoolSize,
      reservePoolSize: raw.reservePoolSize,
      reservePoolTimeoutMs: duration(raw.reservePoolTimeout, '--reserve-pool-timeout'),
      maxDbConnections: raw.maxDbConnections,
      maxUserConnections: raw.maxUserConnections,
      serverIdleTimeoutMs: duration(raw.serverIdleTimeout, '--server-idle-timeout'),
      serverLifetimeMs: duration(raw.serverLifetime, '--server-lifetime'),
      queryWaitTimeoutMs: duration(raw.queryWaitTimeout, '--query-wait-timeout'),
      serverResetQuery: raw.serverResetQuery,
    },
    idleTransactionTimeoutMs: duration(raw.idleTransactionTimeout, '--idle-transaction-timeout'),
    maxPreparedStatements: raw.maxPreparedStatements,
    authType,
    ...(raw.authFile ? { authFile: raw.authFile } : {}),
    ...(raw.ignoreStartupParameters ? { ignoreStartupParameters: raw.ignoreStartupParameters.split(',').map((name) => name.trim().toLowerCase()).filter(Boolean) } : {}),
    ...(raw.trackExtraParameters ? { trackExtraParameters: parse(() => readExtraParameters(raw.trackExtraParameters!.split(','))) } : {}),
    ...(raw.authQuery !== undefined ? { authQuery: raw.authQuery === true ? DEFAULT_AUTH_QUERY : raw.authQuery } : {}),
  };
}

/**
 * The proxy needs a URL it can take apart (server address, TLS mode, database for its own
 * connections); without --postgres-url or DATABASE_URL it builds one from the libpq variables.
 */
function proxyUrl(url: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (url) {
    new URL(url);
    return url;
  }
  const built = new URL('postgres://localhost');
  if (env.PGHOST) built.hostname = env.PGHOST.startsWith('/') ? 'localhost' : env.PGHOST;
  if (env.PGHOST?.startsWith('/')) built.searchParams.set('host', env.PGHOST);
  if (env.PGPORT) built.port = env.PGPORT;
  built.username = env.PGUSER ?? env.USER ?? 'postgres';
  if (env.PGPASSWORD) built.password = env.PGPASSWORD;
  built.pathname = `/${encodeURIComponent(env.PGDATABASE ?? built.username)}`;
  if (env.PGSSLMODE) built.searchParams.set('sslmode', env.PGSSLMODE);
  return built.toString();
}
