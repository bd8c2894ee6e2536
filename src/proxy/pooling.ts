/**
 * The proxy's pools, as the sessions see them (session/pooled.ts's Pooling): where users' secrets
 * come from (--auth-file, then --auth-query), how each pool's server connections log in (the
 * credentials of the pool's latest authenticated client), which parameters a pool's clients are
 * welcomed with, and the checks a new server connection passes before anyone uses it.
 */
import type { Logger } from '../observe/logger.js';
import { AuthQuery } from './auth/auth-query.js';
import type { ServerCredentials } from './auth/client-auth.js';
import type { Secret } from './auth/secret.js';
import { loadUserlist, type Userlist } from './auth/userlist.js';
import type { PoolingOptions } from './config.js';
import type { ProxyMetrics } from './metrics.js';
import type { Pinning } from './pool/pinning.js';
import { Pools, describeKey, idOf, type PoolKey } from './pool/pool.js';
import { PooledServer } from './pool/pooled-server.js';
import type { Pooling } from './session/pooled.js';
import type { UpstreamTarget } from './upstream.js';

interface PoolLogin {
  credentials: ServerCredentials;
  searchPath: string | undefined;
}

/** A pooled server connection that does not have the search_path it was opened with: never lent. */
export class SearchPathDroppedError extends Error {
  constructor(key: PoolKey, expected: string, seen: string) {
    super(
      `a server connection for ${describeKey(key)} opened with search_path "${expected}" has search_path "${seen}": something between the proxy and PostgreSQL drops startup parameters, so the proxy will not lend it`,
    );
    this.name = 'SearchPathDroppedError';
  }
}

export class ProxyPooling implements Pooling {
  readonly pools: Pools<PooledServer>;
  readonly mode: Pooling['mode'];
  readonly authType: Pooling['authType'];
  readonly idleTransactionTimeoutMs: number;
  readonly ignoredStartupParameters: ReadonlySet<string>;
  private userlist: Userlist = new Map();
  private readonly authQuery: AuthQuery | undefined;
  private readonly logins = new Map<string, PoolLogin>();
  private readonly welcomes = new Map<string, readonly Buffer[]>();

  constructor(
    private readonly options: PoolingOptions,
    private readonly upstream: UpstreamTarget,
    /** The proxy's own login (from --postgres-url): runs the auth query. */
    proxyLogin: { user: string; database: string; secret?: Secret },
    private readonly metrics: ProxyMetrics,
    readonly logger: Logger,
  ) {
    this.mode = options.mode;
    this.authType = options.authType;
    this.idleTransactionTimeoutMs = options.idleTransactionTimeoutMs;
    this.ignoredStartupParameters = new Set(options.ignoreStartupParameters ?? []);
    this.authQuery = options.authQuery !== undefined ? new AuthQuery({ target: upstream, login: proxyLogin, query: options.authQuery }) : undefined;
    this.pools = new Pools<PooledServer>((key) => this.open(key), options.settings, {
      onWait: (key, waitedMs) => metrics.poolWait(key, waitedMs / 1000),
      onServerError: (key, error) => logger.warn({ database: key.database, user: key.user, version: key.version || null, err: (error as Error).message }, 'pooled server connection failed'),
    });
  }

  /** Reads the auth file (at start and on RELOAD); a bad file keeps the old list and throws. */
  async loadAuthFile(): Promise<void> {
    if (this.options.authFile) this.userlist = await loadUserlist(this.options.authFile);
  }

  async secretOf(user: string): Promise<Secret | undefined> {
    const listed = this.userlist.get(user);
    if (listed) return listed;
    return this.authQuery?.lookUp(user);
  }

  poolFor(database: string, user: string, version: string, searchPath: string | undefined, credentials: ServerCredentials): PoolKey {
    const key: PoolKey = { database, user, version, ...(searchPath !== undefined ? { searchPath } : {}) };
    this.logins.set(idOf(key), { credentials, searchPath });
    return key;
  }

  welcome(key: PoolKey): readonly Buffer[] | undefined {
    return this.welcomes.get(idOf(key));
  }

  pinned(pinning: Pinning): void {
    this.metrics.pinned(pinning.reason);
    this.logger.info({ reason: pinning.reason, statement: pinning.detail }, 'client pinned to its server connection for the rest of its session');
  }

  async close(): Promise<void> {
    await this.pools.close();
    this.authQuery?.close();
  }

  private async open(key: PoolKey): Promise<PooledServer> {
    const login = this.logins.get(idOf(key));
    if (!login) throw new Error(`no client has logged in to ${describeKey(key)} yet`);
    const params: Array<[string, string]> = login.searchPath !== undefined ? [['search_path', login.searchPath]] : [];
    const server = await PooledServer.open(this.upstream, { user: key.user, database: key.database, ...login.credentials, params }, this.options.maxPreparedStatements);
    if (login.searchPath !== undefined) {
      // Never silently on the wrong version: a connection that lost its search_path on the way is
      // closed before anyone uses it (a pooler in between, RDS Proxy).
      try {
        const rows = await server.session.query("SELECT pg_catalog.current_setting('search_path')");
        const seen = rows[0]?.[0] ?? '';
        if (seen !== login.searchPath) throw new SearchPathDroppedError(key, login.searchPath, seen);
      } catch (error) {
        server.close();
        throw error;
      }
    }
    if (!this.welcomes.has(idOf(key))) this.welcomes.set(idOf(key), server.session.parameterFrames);
    return server;
  }
}
