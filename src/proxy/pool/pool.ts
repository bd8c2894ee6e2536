/**
 * Pools of server connections, one per (database, user, version), with PgBouncer's sizing and
 * timeouts. Generic over the server connection, so that the session layer supplies the real one and
 * the pool stays about who gets which connection when.
 *
 * Semantics follow PgBouncer (doc/config.md): `pool_size` per pool, plus `reserve_pool_size` more for
 * a pool whose oldest client has waited `reserve_pool_timeout`; `max_db_connections` across the pools
 * of a database, `max_user_connections` across the pools of a user; `min_pool_size` kept open; `server_idle_timeout` and `server_lifetime` close
 * connections in the background (lifetime only once a connection is back in the pool);
 * `query_wait_timeout` fails a waiting client with a clear error instead of leaving it hanging.
 * Waiters are served first come, first served. Every timer is unref'd: a pool never keeps the process alive.
 */

/** The transaction status of a server connection's last ReadyForQuery. */
export type TransactionStatus = 'I' | 'T' | 'E';

/** What the pool needs from a server connection. */
export interface ServerConnection {
  readonly transactionStatus: TransactionStatus;
  /** False once the connection broke, or its protocol state is unknown (a client left mid-query). */
  readonly usable: boolean;
  /** Runs SQL through the simple query protocol; settles at its ReadyForQuery, rejecting on an error. */
  run(sql: string): Promise<void>;
  close(): void;
}

export interface PoolKey {
  database: string;
  user: string;
  /** The version schema the connection's search_path starts with; '' for the server's default. */
  version: string;
  /** The search_path startup parameter its connections are opened with, when one is. */
  searchPath?: string;
}

export interface PoolSettings {
  poolSize: number;
  minPoolSize: number;
  reservePoolSize: number;
  reservePoolTimeoutMs: number;
  /** 0: no limit. */
  maxDbConnections: number;
  /** 0: no limit. */
  maxUserConnections: number;
  /** 0: never. */
  serverIdleTimeoutMs: number;
  /** 0: never. */
  serverLifetimeMs: number;
  /** 0: wait as long as it takes (PgBouncer's 0 too). */
  queryWaitTimeoutMs: number;
  /** Run when a session-mode client gives its connection back; '' for none. */
  serverResetQuery: string;
}

/** PgBouncer's defaults. */
export const DEFAULT_POOL_SETTINGS: PoolSettings = {
  poolSize: 20,
  minPoolSize: 0,
  reservePoolSize: 0,
  reservePoolTimeoutMs: 5_000,
  maxDbConnections: 0,
  maxUserConnections: 0,
  serverIdleTimeoutMs: 600_000,
  serverLifetimeMs: 3_600_000,
  queryWaitTimeoutMs: 120_000,
  serverResetQuery: 'DISCARD ALL',
};

export type PoolErrorReason = 'query_wait_timeout' | 'pool_closed' | 'wait_cancelled' | 'server_connect_failed';

/** Why a client got no server connection; `code` is the SQLSTATE the client is told. */
export class PoolError extends Error {
  readonly reason: PoolErrorReason;
  readonly code: string;
  readonly key: PoolKey;
  constructor(reason: PoolErrorReason, message: string, key: PoolKey, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PoolError';
    this.reason = reason;
    this.key = key;
    // 08P01 for the timeout is PgBouncer's; a pool closing under a client is a server going away;
    // an unreachable server is 08006 as elsewhere in the proxy.
    this.code = reason === 'query_wait_timeout' ? '08P01' : reason === 'pool_closed' ? '57P01' : reason === 'wait_cancelled' ? '57014' : '08006';
  }
}

/** How a client gives its connection back. */
export interface ReleaseOptions {
  /** Run the reset query (session mode, at the end of the client's session). */
  reset?: boolean;
  /** The client went away mid-query, or the protocol state is unknown: close, never reuse. */
  broken?: boolean;
}

/** A server connection lent to one client until `release`. */
export interface Lease<C extends ServerConnection> {
  readonly connection: C;
  readonly key: PoolKey;
  /** Milliseconds the client waited for it. */
  readonly waitedMs: number;
  /** Milliseconds until the connection passes server_lifetime (closed when it comes back then); 0: no lifetime. */
  lifetimeLeftMs(): number;
  release(options?: ReleaseOptions): void;
}

export interface PoolStats extends PoolKey {
  waitingClients: number;
  /** Connections lent to clients (as many as clients holding one: PgBouncer's cl_active and sv_active). */
  active: number;
  idle: number;
  /** Being rolled back or reset after use. */
  used: number;
  /** Being connected. */
  opening: number;
  /** How long the oldest waiting client has waited, in ms. */
  maxWaitMs: number;
  /** Leases handed out, connections opened and closed, since the pool was created. */
  leases: number;
  opened: number;
  closed: number;
  paused: boolean;
  closing: boolean;
}

export type ServerState = 'active' | 'idle' | 'used';

export interface ServerStats<C> {
  key: PoolKey;
  state: ServerState;
  connection: C;
  openedAt: number;
  /** When it last went idle or was lent out. */
  changedAt: number;
  /** RECONNECT asked for it to be closed once its client gives it back. */
  closeNeeded: boolean;
}

/**
 * Someone who holds lent connections of a pool for clients of its own and can give some back: the
 * native forwarder keeps connections between its clients' transactions (session/native-pooled.ts).
 */
export interface PoolHolder {
  /** A client of `key` must wait: give back what is not in use. */
  shortage(key: PoolKey): void;
  /** While on, give back every connection of `key` as it comes free (a pause, a retired version). */
  drain(key: PoolKey, on: boolean): void;
  /** Give back every connection of `key` held now as it comes free, keeping those lent later (RECONNECT). */
  reconnect(key: PoolKey): void;
  /**
   * Its own clients of `key` that wait, the connections it holds (lent to it, so counted active
   * here) that are idle, and its requests for connections still unanswered (counted as waiters here).
   */
  figures(key: PoolKey): HolderFigures;
  /** The pool of `key` is closed (a retired version, shutdown): what the holder keeps for it can go once unused. */
  closed?(key: PoolKey): void;
}

export interface HolderFigures {
  waiting: number;
  idle: number;
  requests: number;
}

export interface PoolEvents {
  /** Every lease, with how long its client waited (0 when a connection was free): histogram input. */
  onWait?(key: PoolKey, waitedMs: number): void;
  /** A connection could not be opened, rolled back or reset (the pool copes; this is for the log). */
  onServerError?(key: PoolKey, error: unknown): void;
}

interface Entry<C extends ServerConnection> {
  connection: C;
  pool: Pool<C>;
  state: ServerState;
  openedAt: number;
  changedAt: number;
  /** Closed when it comes back, not lent again (RECONNECT). */
  closeNeeded?: boolean;
}

interface Waiter<C extends ServerConnection> {
  since: number;
  /** For a holder's own clients, whose waits it counts itself: no onWait. */
  forHolder: boolean;
  /** Waited reserve_pool_timeout (set by its timer, not by comparing clocks that may disagree by a millisecond). */
  reserveDue: boolean;
  resolve(lease: Lease<C>): void;
  reject(error: PoolError): void;
  timers: Array<ReturnType<typeof setTimeout>>;
  cleanup(): void;
}

interface Pool<C extends ServerConnection> {
  key: PoolKey;
  id: string;
  idle: Array<Entry<C>>;
  busy: Set<Entry<C>>;
  opening: number;
  waiters: Array<Waiter<C>>;
  closing: boolean;
  drained: Array<() => void>;
  /** Lent connections to close when they come back (RECONNECT); the holders give theirs back meanwhile. */
  closeNeeded: number;
  leases: number;
  opened: number;
  closed: number;
}

interface DatabaseState {
  /** Open and opening connections across the database's pools. */
  connections: number;
  paused: boolean;
  /** PAUSE callers waiting for every connection to come back. */
  pausing: Array<() => void>;
}

const now = () => performance.now();

/** Background checks of idle and old connections run this often at most. */
const MAINTENANCE_INTERVAL_MS = 1_000;

export class Pools<C extends ServerConnection> {
  private readonly pools = new Map<string, Pool<C>>();
  private readonly databases = new Map<string, DatabaseState>();
  /** Open and opening connections per user across its pools (for max_user_connections). */
  private readonly connectionsPerUser = new Map<string, number>();
  private maintenance: ReturnType<typeof setInterval> | undefined;
  private readonly holders: PoolHolder[] = [];
  private readonly closeWaiters: Array<{ database: string | undefined; resolve: () => void }> = [];

  constructor(
    private readonly open: (key: PoolKey) => Promise<C>,
    private readonly settings: PoolSettings,
    private readonly events: PoolEvents = {},
  ) {}

  /** How long a client waits for a connection before it is told so (0: as long as it takes). */
  get queryWaitTimeoutMs(): number {
    return this.settings.queryWaitTimeoutMs;
  }

  /** How long an idle server connection is kept (0: as long as the proxy runs). */
  get serverIdleTimeoutMs(): number {
    return this.settings.serverIdleTimeoutMs;
  }

  addHolder(holder: PoolHolder): void {
    this.holders.push(holder);
  }

  /**
   * A server connection for `key`, now or when one comes free. Rejects with a PoolError on
   * query_wait_timeout, when the pool is closed, when `signal` aborts (the client went away) or
   * when no connection can be opened. `forHolder`: for a PoolHolder, which counts its clients' waits itself.
   */
  acquire(key: PoolKey, signal?: AbortSignal, forHolder = false): Promise<Lease<C>> {
    const pool = this.poolOf(key);
    if (pool.closing) return Promise.reject(closedError(key));
    if (signal?.aborted) return Promise.reject(new PoolError('wait_cancelled', 'the client went away while waiting for a server connection', key));
    const since = now();
    const entry = this.database(key.database).paused ? undefined : this.takeIdle(pool);
    if (entry) return Promise.resolve(this.lend(entry, since, forHolder));
    return new Promise<Lease<C>>((resolve, reject) => {
      const waiter: Waiter<C> = {
        since,
        forHolder,
        reserveDue: false,
        resolve,
        reject,
        timers: [],
        cleanup: () => {
          for (const timer of waiter.timers) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      const giveUp = (error: PoolError) => {
        const index = pool.waiters.indexOf(waiter);
        if (index < 0) return;
        pool.waiters.splice(index, 1);
        waiter.cleanup();
        reject(error);
      };
      const onAbort = () => giveUp(new PoolError('wait_cancelled', 'the client went away while waiting for a server connection', key));
      signal?.addEventListener('abort', onAbort, { once: true });
      const { queryWaitTimeoutMs, reservePoolSize, reservePoolTimeoutMs } = this.settings;
      if (queryWaitTimeoutMs > 0) {
        waiter.timers.push(
          unref(
            setTimeout(
              () =>
                giveUp(
                  new PoolError(
                    'query_wait_timeout',
                    `no server connection came free for ${describeKey(key)} within query_wait_timeout (${queryWaitTimeoutMs} ms)${this.userLimitNote(key.user)}`,
                    key,
                  ),
                ),
              queryWaitTimeoutMs,
            ),
          ),
        );
      }
      // At the reserve timeout the pool may grow past pool_size for this waiter.
      if (reservePoolSize > 0) {
        waiter.timers.push(
          unref(
            setTimeout(() => {
              waiter.reserveDue = true;
              this.serve(pool);
            }, reservePoolTimeoutMs),
          ),
        );
      }
      pool.waiters.push(waiter);
      this.serve(pool);
      if (pool.waiters.includes(waiter)) for (const holder of this.holders) holder.shortage(key);
    });
  }

  /**
   * Takes in a connection opened outside the pool for `key` (the server checking a passthrough
   * login), when the pool has room for it within pool_size and max_db_connections; false: it does
   * not, and the caller closes the connection.
   */
  adopt(key: PoolKey, connection: C): boolean {
    const pool = this.poolOf(key);
    const database = this.database(key.database);
    if (pool.closing || database.paused || this.size(pool) >= this.settings.poolSize) return false;
    if (this.atDatabaseLimit(key.database) || this.atUserLimit(key.user)) return false;
    database.connections++;
    this.countUser(key.user, 1);
    pool.opened++;
    const at = now();
    pool.idle.push({ connection, pool, state: 'idle', openedAt: at, changedAt: at });
    this.serve(pool);
    return true;
  }

  /**
   * Closes the pool of a retired version: waiting clients fail, idle connections close now and
   * lent ones when they come back. Resolves once every connection is closed.
   */
  retire(key: PoolKey): Promise<void> {
    for (const holder of this.holders) holder.closed?.(key);
    const pool = this.pools.get(idOf(key));
    if (!pool) return Promise.resolve();
    pool.closing = true;
    this.drainHolders(pool.key, true);
    for (const waiter of pool.waiters.splice(0)) {
      waiter.cleanup();
      waiter.reject(closedError(key));
    }
    for (const entry of pool.idle.splice(0)) this.destroy(entry);
    const done = new Promise<void>((resolve) => pool.drained.push(resolve));
    this.settleIfDrained(pool);
    return done;
  }

  /**
   * PgBouncer's PAUSE: no more connections are lent for `database` (clients wait, as under
   * PgBouncer); resolves once every lent connection of the database is back, and closes them all.
   */
  pause(database: string): Promise<void> {
    const state = this.database(database);
    state.paused = true;
    for (const pool of this.poolsOf(database)) this.drainHolders(pool.key, true);
    const done = new Promise<void>((resolve) => state.pausing.push(resolve));
    this.settlePause(database);
    return done;
  }

  resume(database: string): void {
    const state = this.database(database);
    state.paused = false;
    for (const pool of this.poolsOf(database)) this.drainHolders(pool.key, false);
    for (const resolve of state.pausing.splice(0)) resolve();
    for (const pool of this.poolsOf(database)) {
      this.serve(pool);
      this.keepMinimum(pool);
    }
  }

  /**
   * PgBouncer's RECONNECT: every server connection of `database` (of all databases when undefined)
   * open now is closed once no client uses it: idle ones now, lent ones when they come back (the
   * holders give theirs back as they come free). New ones are opened as clients need them.
   */
  reconnect(database: string | undefined): void {
    for (const pool of this.pools.values()) {
      if (database !== undefined && pool.key.database !== database) continue;
      for (const entry of pool.idle.splice(0)) this.destroy(entry);
      for (const entry of pool.busy) {
        if (entry.closeNeeded) continue;
        entry.closeNeeded = true;
        pool.closeNeeded++;
      }
      if (pool.closeNeeded > 0) for (const holder of this.holders) holder.reconnect(pool.key);
      this.keepMinimum(pool);
      this.serve(pool);
    }
    this.settleWaitClose();
  }

  /** PgBouncer's WAIT_CLOSE: resolves once no connection that RECONNECT marked remains (of `database`, or of all). */
  waitClose(database: string | undefined): Promise<void> {
    const done = new Promise<void>((resolve) => this.closeWaiters.push({ database, resolve }));
    this.settleWaitClose();
    return done;
  }

  isPaused(database: string): boolean {
    return this.databases.get(database)?.paused ?? false;
  }

  /** Retires every pool (shutdown). */
  async close(): Promise<void> {
    if (this.maintenance) clearInterval(this.maintenance);
    this.maintenance = undefined;
    await Promise.all([...this.pools.values()].map((pool) => this.retire(pool.key)));
  }

  stats(): PoolStats[] {
    const at = now();
    return [...this.pools.values()].map((pool) => {
      let active = 0;
      let used = 0;
      for (const entry of pool.busy) {
        if (entry.state === 'active') active++;
        else used++;
      }
      // A holder's clients are clients of the pool, and its idle connections idle ones.
      let { waiting, idle, requests } = { waiting: 0, idle: 0, requests: 0 };
      for (const holder of this.holders) {
        const figures = holder.figures(pool.key);
        waiting += figures.waiting;
        idle += figures.idle;
        requests += figures.requests;
      }
      return {
        ...pool.key,
        waitingClients: Math.max(0, pool.waiters.length - requests) + waiting,
        active: Math.max(0, active - idle),
        idle: pool.idle.length + idle,
        used,
        opening: pool.opening,
        maxWaitMs: pool.waiters.length > 0 ? at - pool.waiters[0]!.since : 0,
        leases: pool.leases,
        opened: pool.opened,
        closed: pool.closed,
        paused: this.isPaused(pool.key.database),
        closing: pool.closing,
      };
    });
  }

  servers(): Array<ServerStats<C>> {
    const list: Array<ServerStats<C>> = [];
    for (const pool of this.pools.values()) {
      for (const entry of [...pool.busy, ...pool.idle]) {
        list.push({ key: pool.key, state: entry.state, connection: entry.connection, openedAt: entry.openedAt, changedAt: entry.changedAt, closeNeeded: entry.closeNeeded === true });
      }
    }
    return list;
  }

  /** Server connections of a database, open or opening, across its pools (for max_db_connections). */
  databaseConnections(database: string): number {
    return this.databases.get(database)?.connections ?? 0;
  }

  /** Server connections per user, open or opening, across its pools (for max_user_connections). */
  userConnections(): Array<{ user: string; connections: number }> {
    return [...this.connectionsPerUser.entries()].filter(([, connections]) => connections > 0).map(([user, connections]) => ({ user, connections }));
  }

  /** Why a user's client may have waited in vain, when the per-user limit holds it back. */
  private drainHolders(key: PoolKey, on: boolean): void {
    for (const holder of this.holders) holder.drain(key, on);
  }

  private userLimitNote(user: string): string {
    return this.atUserLimit(user) ? `: user "${user}" has max_user_connections (${this.settings.maxUserConnections}) server connections open` : '';
  }

  private poolOf(key: PoolKey): Pool<C> {
    const id = idOf(key);
    let pool = this.pools.get(id);
    if (!pool) {
      pool = { key: { ...key }, id, idle: [], busy: new Set(), opening: 0, waiters: [], closing: false, drained: [], closeNeeded: 0, leases: 0, opened: 0, closed: 0 };
      this.pools.set(id, pool);
      this.keepMinimum(pool);
      this.startMaintenance();
    }
    return pool;
  }

  private database(name: string): DatabaseState {
    let state = this.databases.get(name);
    if (!state) {
      state = { connections: 0, paused: false, pausing: [] };
      this.databases.set(name, state);
    }
    return state;
  }

  private *poolsOf(database: string): Iterable<Pool<C>> {
    for (const pool of this.pools.values()) if (pool.key.database === database) yield pool;
  }

  /** The most recently returned usable idle connection (warm caches), closing broken ones on the way. */
  private takeIdle(pool: Pool<C>): Entry<C> | undefined {
    for (let entry = pool.idle.pop(); entry; entry = pool.idle.pop()) {
      if (entry.connection.usable) return entry;
      this.destroy(entry);
    }
    return undefined;
  }

  private lend(entry: Entry<C>, since: number, forHolder: boolean): Lease<C> {
    const pool = entry.pool;
    const at = now();
    entry.state = 'active';
    entry.changedAt = at;
    pool.busy.add(entry);
    pool.leases++;
    const waitedMs = at - since;
    if (!forHolder) this.events.onWait?.(pool.key, waitedMs);
    let released = false;
    return {
      connection: entry.connection,
      key: pool.key,
      waitedMs,
      lifetimeLeftMs: () => {
        const lifetime = this.settings.serverLifetimeMs;
        return lifetime > 0 ? Math.max(1, entry.openedAt + lifetime - now()) : 0;
      },
      release: (options = {}) => {
        if (released) return;
        released = true;
        void this.takeBack(entry, options);
      },
    };
  }

  /** Hands idle or new connections to waiters, oldest waiter first. */
  private serve(pool: Pool<C>): void {
    if (pool.closing || this.database(pool.key.database).paused) return;
    while (pool.waiters.length > 0) {
      const entry = this.takeIdle(pool);
      if (!entry) break;
      const waiter = pool.waiters.shift()!;
      waiter.cleanup();
      waiter.resolve(this.lend(entry, waiter.since, waiter.forHolder));
    }
    // Connections being opened are already promised to the first waiters.
    while (pool.waiters.length > pool.opening && this.mayOpen(pool)) this.openFor(pool);
  }

  private size(pool: Pool<C>): number {
    return pool.idle.length + pool.busy.size + pool.opening;
  }

  private mayOpen(pool: Pool<C>): boolean {
    const { poolSize, reservePoolSize } = this.settings;
    const size = this.size(pool);
    if (this.atDatabaseLimit(pool.key.database)) {
      // As PgBouncer does, an idle connection of another pool of the database makes room; otherwise
      // a pool that went quiet would starve a busy one for as long as server_idle_timeout.
      if (size >= poolSize || !this.evictIdle(pool, (other) => other.key.database === pool.key.database)) return false;
    }
    if (this.atUserLimit(pool.key.user)) {
      if (size >= poolSize || !this.evictIdle(pool, (other) => other.key.user === pool.key.user)) return false;
    }
    if (size < poolSize) return true;
    // The reserve is for a pool whose oldest client has waited long enough (PgBouncer looks at the oldest too).
    return size < poolSize + reservePoolSize && pool.waiters[0]?.reserveDue === true;
  }

  /** max_db_connections (when set) reached by the database's connections, open and opening. */
  private atDatabaseLimit(database: string): boolean {
    const limit = this.settings.maxDbConnections;
    return limit > 0 && this.database(database).connections >= limit;
  }

  /** max_user_connections (when set) reached by the user's connections, open and opening. */
  private atUserLimit(user: string): boolean {
    const limit = this.settings.maxUserConnections;
    return limit > 0 && this.connectionsOf(user) >= limit;
  }

  private connectionsOf(user: string): number {
    return this.connectionsPerUser.get(user) ?? 0;
  }

  private countUser(user: string, change: 1 | -1): void {
    this.connectionsPerUser.set(user, this.connectionsOf(user) + change);
  }

  /** Closes the longest-idle connection of another pool that shares the limit (`sharing`). */
  private evictIdle(except: Pool<C>, sharing: (pool: Pool<C>) => boolean): boolean {
    let victim: Entry<C> | undefined;
    for (const pool of this.pools.values()) {
      if (pool === except || pool.idle.length === 0 || !sharing(pool)) continue;
      const oldest = pool.idle[0]!;
      if (!victim || oldest.changedAt < victim.changedAt) victim = oldest;
    }
    if (!victim) return false;
    victim.pool.idle.shift();
    // The caller opens in the freed slot itself: no other pool may take it meanwhile.
    this.destroy(victim, false);
    return true;
  }

  private openFor(pool: Pool<C>): void {
    const database = this.database(pool.key.database);
    pool.opening++;
    database.connections++;
    this.countUser(pool.key.user, 1);
    this.open(pool.key).then(
      (connection) => {
        pool.opening--;
        pool.opened++;
        const at = now();
        const entry: Entry<C> = { connection, pool, state: 'idle', openedAt: at, changedAt: at };
        if (pool.closing || database.paused) {
          this.destroy(entry);
          this.serve(pool);
          return;
        }
        pool.idle.push(entry);
        this.serve(pool);
      },
      (error: unknown) => {
        pool.opening--;
        database.connections--;
        this.countUser(pool.key.user, -1);
        this.events.onServerError?.(pool.key, error);
        // One failure fails one waiter, with the cause, rather than leaving it to the timeout.
        const waiter = pool.waiters.shift();
        if (waiter) {
          waiter.cleanup();
          const message = error instanceof Error ? error.message : String(error);
          waiter.reject(new PoolError('server_connect_failed', `could not open a server connection for ${describeKey(pool.key)}: ${message}`, pool.key, { cause: error }));
        }
        this.settleIfDrained(pool);
        this.settlePause(pool.key.database);
      },
    );
  }

  private async takeBack(entry: Entry<C>, options: ReleaseOptions): Promise<void> {
    const pool = entry.pool;
    const connection = entry.connection;
    entry.state = 'used';
    entry.changedAt = now();
    let keep = !options.broken && connection.usable;
    // A connection left in a transaction is never lent again as it is: roll it back first (DISCARD ALL
    // cannot run inside a transaction block either).
    const cleanup = [connection.transactionStatus !== 'I' ? 'ROLLBACK' : '', options.reset ? this.settings.serverResetQuery : ''].filter(Boolean);
    if (keep && cleanup.length > 0) {
      try {
        for (const sql of cleanup) await connection.run(sql);
        keep = connection.usable && connection.transactionStatus === 'I';
      } catch (error) {
        this.events.onServerError?.(pool.key, error);
        keep = false;
      }
    }
    const lifetime = this.settings.serverLifetimeMs;
    if (lifetime > 0 && now() - entry.openedAt >= lifetime) keep = false;
    if (entry.closeNeeded) keep = false;
    pool.busy.delete(entry);
    if (!keep || pool.closing || this.database(pool.key.database).paused) {
      this.destroy(entry);
      this.keepMinimum(pool);
    } else {
      entry.state = 'idle';
      entry.changedAt = now();
      pool.idle.push(entry);
    }
    this.serve(pool);
    // An idle connection no one here waits for can make room for a client of another pool waiting at
    // max_db_connections or max_user_connections (mayOpen closes it), without waiting for maintenance.
    if (pool.waiters.length === 0 && pool.idle.length > 0) this.serveSharing(pool);
    this.settleIfDrained(pool);
    this.settlePause(pool.key.database);
  }

  private destroy(entry: Entry<C>, offerFreedSlot = true): void {
    const pool = entry.pool;
    pool.closed++;
    if (entry.closeNeeded) {
      entry.closeNeeded = false;
      pool.closeNeeded--;
      this.settleWaitClose();
    }
    this.database(pool.key.database).connections--;
    this.countUser(pool.key.user, -1);
    try {
      entry.connection.close();
    } catch (error) {
      this.events.onServerError?.(pool.key, error);
    }
    // A freed slot of the database (or the user) may let another of its pools open a connection.
    if (offerFreedSlot) this.serveSharing(pool);
  }

  /** Serves the other pools that share a connection limit (database or user) with `pool`. */
  private serveSharing(pool: Pool<C>): void {
    const { maxDbConnections, maxUserConnections } = this.settings;
    for (const other of [...this.pools.values()]) {
      if (other === pool || other.waiters.length === 0) continue;
      if ((maxDbConnections > 0 && other.key.database === pool.key.database) || (maxUserConnections > 0 && other.key.user === pool.key.user)) this.serve(other);
    }
  }

  /** Opens connections up to min_pool_size in the background. */
  private keepMinimum(pool: Pool<C>): void {
    const database = this.database(pool.key.database);
    while (!pool.closing && !database.paused && this.size(pool) < this.settings.minPoolSize && !this.atDatabaseLimit(pool.key.database) && !this.atUserLimit(pool.key.user)) {
      this.openFor(pool);
    }
  }

  private settleIfDrained(pool: Pool<C>): void {
    if (!pool.closing || pool.busy.size > 0 || pool.opening > 0 || pool.idle.length > 0) return;
    if (this.pools.get(pool.id) === pool) this.pools.delete(pool.id);
    for (const resolve of pool.drained.splice(0)) resolve();
  }

  private settleWaitClose(): void {
    for (let i = 0; i < this.closeWaiters.length; ) {
      const { database, resolve } = this.closeWaiters[i]!;
      const marked = [...this.pools.values()].some((pool) => pool.closeNeeded > 0 && (database === undefined || pool.key.database === database));
      if (marked) i++;
      else {
        this.closeWaiters.splice(i, 1);
        resolve();
      }
    }
  }

  private settlePause(database: string): void {
    const state = this.databases.get(database);
    if (!state?.paused || state.pausing.length === 0) return;
    for (const pool of this.poolsOf(database)) if (pool.busy.size > 0 || pool.opening > 0) return;
    for (const pool of this.poolsOf(database)) for (const entry of pool.idle.splice(0)) this.destroy(entry);
    for (const resolve of state.pausing.splice(0)) resolve();
  }

  private startMaintenance(): void {
    if (this.maintenance) return;
    const { serverIdleTimeoutMs, serverLifetimeMs } = this.settings;
    const shortest = Math.min(...[serverIdleTimeoutMs, serverLifetimeMs].filter((ms) => ms > 0), MAINTENANCE_INTERVAL_MS);
    this.maintenance = unref(setInterval(() => this.maintain(), shortest));
  }

  /** Closes connections idle past server_idle_timeout (above min_pool_size) or older than server_lifetime. */
  private maintain(): void {
    const { serverIdleTimeoutMs, serverLifetimeMs, minPoolSize } = this.settings;
    const at = now();
    for (const pool of this.pools.values()) {
      // Oldest-idle first, so that the warm end of the stack survives.
      for (let i = 0; i < pool.idle.length; ) {
        const entry = pool.idle[i]!;
        const tooOld = serverLifetimeMs > 0 && at - entry.openedAt >= serverLifetimeMs;
        const idleTooLong = serverIdleTimeoutMs > 0 && at - entry.changedAt >= serverIdleTimeoutMs && this.size(pool) > minPoolSize;
        if (tooOld || idleTooLong || !entry.connection.usable) {
          pool.idle.splice(i, 1);
          this.destroy(entry);
        } else i++;
      }
      this.keepMinimum(pool);
      this.serve(pool);
    }
  }
}

/** One string per pool key, for maps keyed by pool. */
export function idOf(key: PoolKey): string {
  return `${key.database}\0${key.user}\0${key.version}\0${key.searchPath ?? ''}`;
}

export function describeKey(key: PoolKey): string {
  return `database "${key.database}", user "${key.user}"${key.version ? `, version ${key.version}` : ''}`;
}

function closedError(key: PoolKey): PoolError {
  return new PoolError('pool_closed', `the pool for ${describeKey(key)} is closed (its version was retired, or the proxy is shutting down)`, key);
}

function unref<T extends { unref(): unknown }>(timer: T): T {
  timer.unref();
  return timer;
}
