import type { Command } from 'commander';
import { UsageError } from '../../errors/index.js';
import { PROXY_DEFAULTS, parseDuration, parseForwarder, parseHostPort, type ProxyOptions } from '../../proxy/config.js';
import { readStatusFrom } from '../../engine/status.js';
import { startProxy } from '../../proxy/server.js';
import type { CliIO } from '../io.js';
import { commonSettings, positiveInteger } from '../settings.js';

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
    schema: settings.schema,
    stateSchema: settings.stateSchema,
    logger: settings.logger,
    rollout: () => readStatusFrom(settings.postgresUrl, settings.stateSchema, settings.schema),
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
