/**
 * The proxy's pools, as the sessions see them (session/pooled.ts's Pooling): where users' secrets
 * come from (--auth-file, then --auth-query; in passthrough, the server's verdict on each client's
 * password), how each pool's server connections log in (the credentials of the pool's latest
 * authenticated client; in passthrough, the user's kept password), which parameters a pool's clients
 * are welcomed with, and the checks a new server connection passes before anyone uses it.
 */
import type { Logger } from '../observe/logger.js';
import { AuthQuery } from './auth/auth-query.js';
import type { ServerCredentials } from './auth/client-auth.js';
import { KeptPasswordRefusedError, KeptPasswords } from './auth/passthrough.js';
import { ServerError, ServerSession } from './auth/server-session.js';
import type { Secret } from './auth/secret.js';
import { loadUserlist, type Userlist } from './auth/userlist.js';
import type { PoolingOptions } from './config.js';
import type { ProxyMetrics } from './metrics.js';
import type { ErrorFields } from './protocol/messages.js';
import { TrackedParameters } from './pool/client-parameters.js';
import type { Pinning } from './pool/pinning.js';
import { Pools, describeKey, idOf, type PoolKey } from './pool/pool.js';
import { PooledServer } from './pool/pooled-server.js';
import type { Pooling } from './session/pooled.js';
import type { UpstreamTarget } from './upstream.js';

/** How long a passthrough password is kept after its user's last client left, without --server-idle-timeout. */
const DEFAULT_FORGET_AFTER_MS = 10 * 60_000;

/** PostgreSQL's SQLSTATE for a password it does not take (wrong, or expired). */
const INVALID_PASSWORD = '28P01';

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
  readonly tracked: TrackedParameters;
  private userlist: Userlist = new Map();
  private readonly authQuery: AuthQuery | undefined;
  /** Passthrough only: the passwords the server accepted, per user. */
  private readonly passwords: KeptPasswords | undefined;
  private readonly logins = new Map<string, ServerCredentials>();
  private readonly welcomes = new Map<string, readonly Buffer[]>();
  private readonly disabled = new Set<string>();

  constructor(
    private readonly options: PoolingOptions,
    private readonly upstream: UpstreamTarget,
    /** The proxy's own login (from --postgres-url): runs the auth query. */
    private readonly proxyLogin: { user: string; database: string; secret?: Secret },
    private readonly metrics: ProxyMetrics,
    readonly logger: Logger,
  ) {
    this.mode = options.mode;
    this.authType = options.authType;
    this.idleTransactionTimeoutMs = options.idleTransactionTimeoutMs;
    this.ignoredStartupParameters = new Set(options.ignoreStartupParameters ?? []);
    this.tracked = new TrackedParameters(options.trackExtraParameters ?? []);
    this.passwords = options.authType === 'passthrough' ? new KeptPasswords() : undefined;
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

  /**
   * Passthrough: whether the server takes `password` for `user` (undefined), or its refusal. A
   * password the server accepted before needs no round trip; another one is tried on a new server
   * connection for `key`, which then joins the pool if it has room (no key, as for the admin
   * console: on the proxy's own database, and closed).
   */
  async checkPassword(user: string, password: string, key: PoolKey | undefined): Promise<ErrorFields | undefined> {
    const passwords = this.passwords;
    if (!passwords) throw new Error('passwords are checked by the server only with --auth-type passthrough');
    if (passwords.matches(user, password)) return undefined;
    const secret: Secret = { kind: 'plain', password };
    try {
      if (key) {
        const server = await this.connect(key, { secret });
        passwords.keep(user, password);
        if (!this.pools.adopt(key, server)) server.close();
      } else {
        (await ServerSession.open(this.upstream, { user, database: this.proxyLogin.database, secret })).close();
        passwords.keep(user, password);
      }
      return undefined;
    } catch (error) {
      if (error instanceof ServerError) return error.errorFields;
      return { severity: 'FATAL', code: '08006', message: `the tandem proxy could not ask the server to check the password of user "${user}": ${(error as Error).message}` };
    }
  }

  /**
   * Passthrough: forgets the kept passwords of users who have had no client for as long as an idle
   * server connection lives (--server-idle-timeout, else 10 minutes); `present`: the users with one now.
   */
  forgetAbsentUsers(present: ReadonlySet<string>): void {
    const afterMs = this.options.settings.serverIdleTimeoutMs || DEFAULT_FORGET_AFTER_MS;
    for (const user of this.passwords?.forgetAbsent(present, afterMs) ?? []) {
      this.logger.info({ user }, 'forgot the kept password of a user with no client connected; the next login of this user goes to the server');
    }
  }

  poolFor(database: string, user: string, version: string, searchPath: string | undefined, credentials: ServerCredentials): PoolKey {
    const key: PoolKey = { database, user, version, ...(searchPath !== undefined ? { searchPath } : {}) };
    this.logins.set(idOf(key), credentials);
    return key;
  }

  /** DISABLE in the admin console: new clients of the database are refused until ENABLE. */
  disable(database: string): void {
    this.disabled.add(database);
  }

  enable(database: string): void {
    this.disabled.delete(database);
  }

  disabledDatabases(): string[] {
    return [...this.disabled];
  }

  loginRefusal(database: string): ErrorFields | undefined {
    if (!this.disabled.has(database)) return undefined;
    // PgBouncer's words and SQLSTATE for a disabled database.
    return { severity: 'FATAL', code: '08P01', message: `database "${database}" is disabled`, hint: 'An administrator ran DISABLE in the tandem admin console; ENABLE lets clients in again.' };
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
    if (this.passwords) return this.openWithKeptPassword(key, this.passwords);
    const credentials = this.logins.get(idOf(key));
    if (!credentials) throw new Error(`no client has logged in to ${describeKey(key)} yet`);
    return this.connect(key, credentials);
  }

  /**
   * A kept password the server refuses (changed or expired) is dropped, so that the next login goes
   * to the server again; whatever refused the login, the waiting client gets the server's words.
   */
  private async openWithKeptPassword(key: PoolKey, passwords: KeptPasswords): Promise<PooledServer> {
    const kept = passwords.passwordOf(key.user);
    if (!kept) throw new Error(`no client has logged in to ${describeKey(key)} yet`);
    if ('refused' in kept) throw new KeptPasswordRefusedError(kept.refused);
    try {
      return await this.connect(key, { secret: { kind: 'plain', password: kept.password } });
    } catch (error) {
      if (!(error instanceof ServerError) || !error.code.startsWith('28')) throw error;
      // Only a refused password is dropped: a pg_hba rule refusing this one database (28000) says
      // nothing about the password, which other databases may still take.
      if (error.code === INVALID_PASSWORD && passwords.drop(key.user, kept.password, error.errorFields)) {
        this.logger.warn({ user: key.user, code: error.code, err: error.message }, 'the server refused the kept password of a user: dropped; the next login of this user goes to the server');
      }
      throw new KeptPasswordRefusedError(error.errorFields);
    }
  }

  private async connect(key: PoolKey, credentials: ServerCredentials): Promise<PooledServer> {
    const searchPath = key.searchPath;
    const params: Array<[string, string]> = searchPath !== undefined ? [['search_path', searchPath]] : [];
    const server = await PooledServer.open(this.upstream, { user: key.user, database: key.database, ...credentials, params }, this.options.maxPreparedStatements, this.tracked);
    if (searchPath !== undefined) {
      // Never silently on the wrong version: a connection that lost its search_path on the way is
      // closed before anyone uses it (a pooler in between, RDS Proxy).
      try {
        const rows = await server.session.query("SELECT pg_catalog.current_setting('search_path')");
        const seen = rows[0]?.[0] ?? '';
        if (seen !== searchPath) throw new SearchPathDroppedError(key, searchPath, seen);
      } catch (error) {
        server.close();
        throw error;
      }
    }
    if (!this.welcomes.has(idOf(key))) this.welcomes.set(idOf(key), server.session.parameterFrames);
    return server;
  }
}
