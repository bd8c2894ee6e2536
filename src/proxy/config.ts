/**
 * The proxy's settings as typed values, and the parsers that turn flag text into them (once, at the
 * edge: the CLI calls these, the proxy only ever sees ProxyOptions).
 */
import type { Logger } from '../observe/logger.js';
import type { RolloutView } from '../observe/status-page.js';
import type { AuthType } from './auth/client-auth.js';
import { FORWARDER_CHOICES, type ForwarderChoice } from './native.js';
import type { PoolSettings } from './pool/pool.js';
import type { PoolMode } from './session/pooled.js';

/** `--pool-mode session|transaction` and what goes with it (absent: `none`, one server connection per client). */
export interface PoolingOptions {
  mode: PoolMode;
  settings: PoolSettings;
  /** 0: never. */
  idleTransactionTimeoutMs: number;
  maxPreparedStatements: number;
  authType: AuthType;
  /** PgBouncer's userlist.txt format. */
  authFile?: string;
  /** Looks up users not in the auth file; run as the --postgres-url user. */
  authQuery?: string;
  /** Startup parameters (lower case) dropped instead of refused (PgBouncer's ignore_startup_parameters). */
  ignoreStartupParameters?: readonly string[];
  /** Settings (lower case) carried for each client like extra_float_digits (PgBouncer's track_extra_parameters). */
  trackExtraParameters?: readonly string[];
}

export interface HostPort {
  host: string;
  port: number;
}

export interface ProxyOptions {
  listen: HostPort;
  /** The proxy's own connection string: where the server is, and whose credentials read the state. */
  postgresUrl: string;
  http?: HostPort;
  tlsCert?: string;
  tlsKey?: string;
  /** What plain `app` (no `@version`) gets. */
  defaultVersion: string;
  /** Client connections served at once; more get "too many connections" (53300). */
  maxClientConn: number;
  /** How long SIGTERM waits for sessions to end before closing them. */
  shutdownGraceMs: number;
  /** A client must be logged in (ReadyForQuery) this soon after connecting. */
  clientLoginTimeoutMs: number;
  /** Connecting (TCP and TLS) to PostgreSQL must take no longer than this. */
  serverConnectTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Heartbeat rows older than this are deleted (by any proxy). */
  heartbeatExpireMs: number;
  /** A version list is re-read after this long even without a notification. */
  versionCacheTtlMs: number;
  schema: string;
  stateSchema: string;
  logger: Logger;
  /** Defaults to `<hostname>:<pid>:<random>`. */
  proxyId?: string;
  /** Who forwards bytes after login (default `auto`: the native forwarder where it is built). */
  forwarder?: ForwarderChoice;
  /**
   * The native thread accepts clients and logs in those whose startup packet it learned
   * (session/native-login.ts); needs the native forwarder, transaction mode and trust.
   */
  nativeLogin?: boolean;
  /**
   * Reads the rollout (versions, live clients across proxies, the active migration) for /status and
   * the status page; the proxy cannot read it itself because that is the engine's reading.
   */
  rollout?: () => Promise<RolloutView>;
  pooling?: PoolingOptions;
  /** Users who may connect to the admin console (empty: nobody). */
  adminUsers?: readonly string[];
  /** The database name that reaches the admin console. */
  adminDatabase?: string;
}

export const PROXY_DEFAULTS = {
  listen: '127.0.0.1:6432',
  defaultVersion: 'latest',
  maxClientConn: 1000,
  shutdownGrace: '30s',
  clientLoginTimeout: '60s',
  serverConnectTimeout: '15s',
  heartbeatInterval: '5s',
  versionCacheTtl: '10s',
  forwarder: 'auto',
  nativeLogin: 'off',
  poolMode: 'none',
  authType: 'md5',
  adminDatabase: 'tandem',
} as const;

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces); port 0 picks a free one. */
export function parseHostPort(text: string, flag: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new Error(`${flag} must be HOST:PORT (e.g. 127.0.0.1:6432), got "${text}"`);
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds (as PgBouncer's settings). */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) throw new Error(`${flag} must be a duration such as 30s, 500ms or 2m, got "${text}"`);
  return Math.round(Number(match[1]) * UNITS[match[2] ?? 's']!);
}

export function parseForwarder(text: string, flag: string): ForwarderChoice {
  const choice = FORWARDER_CHOICES.find((c) => c === text.trim());
  if (!choice) throw new Error(`${flag} must be one of ${FORWARDER_CHOICES.join(', ')}, got "${text}"`);
  return choice;
}

export function parseOnOff(text: string, flag: string): boolean {
  const value = text.trim();
  if (value !== 'on' && value !== 'off') throw new Error(`${flag} must be on or off, got "${text}"`);
  return value === 'on';
}

/**
 * A `host:port` the proxy itself wrote (a client's address, the native thread's local address), split
 * at its last colon, an IPv6 host's brackets dropped; no port: the whole text is the host, port 0.
 */
export function splitHostPort(text: string): HostPort {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { host: text, port: 0 };
  return { host: text.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(text.slice(colon + 1)) || 0 };
}

export function formatHostPort(address: HostPort): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
