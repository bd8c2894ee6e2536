/**
 * Pooled clients in transaction mode forwarded by the native thread (native/forwarder.c, "pooled
 * sessions"). The thread reads each client, holds each request until it is whole, and passes its
 * pool's server connections ("links") from client to client between transactions, as PgBouncer
 * does, so a transaction costs JavaScript nothing. This side supplies the links: a NativePool,
 * one per pool key and set of client parameters, borrows connections from the proxy's Pools when the
 * thread asks and takes them back when the thread returns them (idle too long, past their lifetime,
 * broken, or asked back because the proxy's own clients wait, or a pause or a retired version
 * drains the pool).
 *
 * What needs the proxy's bookkeeping (named statements, statements that may pin or change a tracked
 * parameter, a Flush, a ParameterStatus from the server) makes the thread hand the client back
 * between two requests; the session then goes on with PooledForwarding in Node, with the connection
 * it holds.
 */
import net from 'node:net';
import type { NativeWaits } from '../metrics.js';
import { POOL_WAIT_BUCKETS } from '../wait-histogram.js';
import { Counter, PoolFigure, type NativeEnd, type NativeForwarder, type NativeHandle, type NativePoolHandle } from '../native.js';
import { parameterSync, type ParameterValues } from '../pool/client-parameters.js';
import { PoolError, describeKey, type HolderFigures, type Lease, type PoolHolder, type PoolKey, type Pools, type ReleaseOptions } from '../pool/pool.js';
import type { PooledServer } from '../pool/pooled-server.js';
import { decodeStatementNames } from '../pool/prepared.js';
import { encodeErrorResponse, type ErrorFields } from '../protocol/messages.js';
import { retiredError } from './forwarding.js';
import { poolErrorFields, type PooledContext } from './pooled.js';

/**
 * The thread's pools of one proxy (one Pools), by pool key and client parameters. A pool is closed
 * when its key's pool is (a retired version, shutdown) or when it has had no session for
 * --server-idle-timeout (10 minutes when that is 0); the thread frees it once nothing uses it, and a
 * client that comes for its key and parameters after the close gets a new pool.
 */
class NativePools implements PoolHolder {
  /** Open pools, by poolId: the ones clients join. */
  private readonly byKey = new Map<string, NativePool>();
  /** Closed pools the thread has not freed yet (sessions still in them, links not back). */
  private readonly closing = new Set<NativePool>();
  /** The waits of freed pools, by pool key: the histogram is cumulative, so they stay counted. */
  private readonly freedWaits = new Map<string, NativeWaits>();
  /** Pool keys whose clients reached MAX_PARAMETER_SETS (logged once). */
  private readonly limitLogged = new Set<string>();
  /** The pool whose want is being acquired now: its own wait must not take links from it. */
  acquiring: NativePool | undefined;

  constructor(
    private readonly forwarder: NativeForwarder,
    private readonly ctx: PooledContext,
  ) {
    ctx.pools.addHolder(this);
  }

  /**
   * The thread's pool for the key and these client parameters; undefined when the key already has
   * MAX_PARAMETER_SETS of them (the client is forwarded in Node): clients that each bring a new
   * application_name would otherwise add one each for as long as the idle rule keeps them.
   */
  poolFor(key: PoolKey, parameters: ParameterValues): NativePool | undefined {
    const keyId = poolKeyId(key);
    const id = `${keyId}\0${[...parameters].map(([name, value]) => `${name}=${value ?? ''}`).join('\0')}`;
    let pool = this.byKey.get(id);
    if (!pool) {
      if (this.poolsOf(keyId) >= MAX_PARAMETER_SETS) {
        if (!this.limitLogged.has(keyId)) {
          this.limitLogged.add(keyId);
          this.ctx.logger.info(
            { database: key.database, user: key.user, version: key.version || null, limit: MAX_PARAMETER_SETS },
            `clients of ${describeKey(key)} brought ${MAX_PARAMETER_SETS} different sets of client parameters (application_name, TimeZone, …): clients with another set are forwarded in Node`,
          );
        }
        return undefined;
      }
      pool = new NativePool(this.forwarder, this.ctx, key, parameters, this, id);
      this.byKey.set(id, pool);
    }
    return pool;
  }

  /** How many thread pools (sets of client parameters) a pool key has, closed ones not freed yet included. */
  private poolsOf(keyId: string): number {
    let count = 0;
    for (const pool of this.pools()) if (poolKeyId(pool.key) === keyId) count++;
    return count;
  }

  /** Clients of the pool's key and parameters get a new pool from now on; the thread frees this one once unused. */
  close(pool: NativePool): void {
    if (this.byKey.get(pool.id) !== pool) return;
    this.byKey.delete(pool.id);
    this.closing.add(pool);
    pool.close();
  }

  /** The thread freed the pool: its waits stay counted under its key. */
  freed(pool: NativePool): void {
    this.closing.delete(pool);
    const keyId = poolKeyId(pool.key);
    const waits = pool.waits();
    const kept = this.freedWaits.get(keyId);
    if (!kept) this.freedWaits.set(keyId, waits);
    else {
      kept.count += waits.count;
      kept.sumSeconds += waits.sumSeconds;
      waits.buckets.forEach((n, i) => (kept.buckets[i] = (kept.buckets[i] ?? 0) + n));
    }
  }

  /** The key's pool closed (a retired version, shutdown): so do its thread pools. */
  closed(key: PoolKey): void {
    const id = poolKeyId(key);
    for (const pool of [...this.byKey.values()]) if (poolKeyId(pool.key) === id) this.close(pool);
  }

  shortage(key: PoolKey): void {
    const id = poolKeyId(key);
    for (const pool of this.pools()) if (pool !== this.acquiring && poolKeyId(pool.key) === id) pool.reclaim();
  }

  drain(key: PoolKey, on: boolean): void {
    const id = poolKeyId(key);
    for (const pool of this.pools()) if (poolKeyId(pool.key) === id) pool.drain(on);
  }

  reconnect(key: PoolKey): void {
    const id = poolKeyId(key);
    for (const pool of this.pools()) if (poolKeyId(pool.key) === id) pool.expire();
  }

  figures(key: PoolKey): HolderFigures {
    const id = poolKeyId(key);
    const total = { waiting: 0, idle: 0, requests: 0 };
    for (const pool of this.pools()) {
      if (poolKeyId(pool.key) !== id) continue;
      total.waiting += pool.figure(PoolFigure.Waiting);
      total.idle += pool.figure(PoolFigure.Parked);
      total.requests += pool.requests;
    }
    return total;
  }

  /** Open and closing ones: the thread has them all. */
  pools(): NativePool[] {
    return [...this.byKey.values(), ...this.closing];
  }

  waits(): NativeWaits[] {
    return [...this.pools().map((pool) => pool.waits()), ...this.freedWaits.values()];
  }
}

/** The waits of every native pool of `pools` so far, freed ones included (cumulative, as a histogram's are). */
export function nativeWaits(pools: Pools<PooledServer>): NativeWaits[] {
  return registries.get(pools)?.waits() ?? [];
}

/** How many pools the native thread has for `pools` now, closed ones it has not freed yet included. */
export function nativePoolCount(pools: Pools<PooledServer>): number {
  return registries.get(pools)?.pools().length ?? 0;
}

/** The ids of the server connections the native thread holds now (lent to one of its clients or parked). */
export function nativeConnectionIds(pools: Pools<PooledServer>): Set<number> {
  return new Set([...(registries.get(pools)?.pools() ?? [])].flatMap((pool) => pool.connectionIds()));
}

const WAIT_BOUNDS_US = new Float64Array(POOL_WAIT_BUCKETS.map((seconds) => seconds * 1e6));

function poolKeyId(key: PoolKey): string {
  return `${key.database}\0${key.user}\0${key.version}\0${key.searchPath ?? ''}`;
}

const registries = new WeakMap<Pools<PooledServer>, NativePools>();

/** Sets of client parameters the thread keeps a pool for, per pool key (database, user, version). */
export const MAX_PARAMETER_SETS = 64;

/** How long a thread pool without a session is kept when --server-idle-timeout is 0 (never), as passthrough passwords are. */
const IDLE_POOL_DEFAULT_MS = 600_000;

/** The server connections the thread holds for one pool's sessions, and how they come and go. */
export class NativePool {
  readonly handle: NativePoolHandle;
  /** Lent to the thread, by server connection id. */
  private readonly leases = new Map<number, Lease<PooledServer>>();
  /** Written by the thread (PoolFigure). */
  private readonly figures = new Float64Array(PoolFigure.WaitBuckets + WAIT_BOUNDS_US.length + 1);
  /** Connections asked of the proxy's pool for the thread and not answered yet. */
  requests = 0;
  private readonly parameters: ParameterValues;
  /** Its sessions as JavaScript knows them (a native login counts once reported). */
  private sessions = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  /** performance.now() when brief clients were last counted in (visited). */
  private visitedAt = -Infinity;
  /** Closed: no client joins it, and after `closed` no command names its handle. */
  private closing = false;

  constructor(
    private readonly forwarder: NativeForwarder,
    readonly ctx: PooledContext,
    readonly key: PoolKey,
    parameters: ParameterValues,
    private readonly registry: NativePools,
    /** Its key and parameters (NativePools' map key). */
    readonly id: string,
  ) {
    // The values its sessions share (a session whose values change goes back to Node).
    this.parameters = new Map(parameters);
    this.handle = forwarder.createPool(
      { want: () => this.want(), returned: (id, status, broken, statements) => this.returned(id, status, broken, statements), closed: () => registry.freed(this) },
      this.figures,
      WAIT_BOUNDS_US,
    );
    this.armIdle();
  }

  get closed(): boolean {
    return this.closing;
  }

  joined(): void {
    this.sessions++;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  left(): void {
    this.sessions--;
    if (this.sessions === 0) this.armIdle();
  }

  /** Clients came and went without a session of their own (brief native logins): the pool is in use. */
  visited(): void {
    this.visitedAt = performance.now();
  }

  /** With no session (nor brief client) for as long as an idle server connection is kept, the pool closes. */
  private armIdle(idleMs = this.ctx.pools.serverIdleTimeoutMs || IDLE_POOL_DEFAULT_MS): void {
    if (this.closing) return;
    this.idleTimer = setTimeout(() => {
      const full = this.ctx.pools.serverIdleTimeoutMs || IDLE_POOL_DEFAULT_MS;
      const since = performance.now() - this.visitedAt;
      if (since < full) this.armIdle(full - since);
      else this.registry.close(this);
    }, idleMs).unref();
  }

  /** NativePools.close: the thread frees it once no session, link or want is left. */
  close(): void {
    this.closing = true;
    clearTimeout(this.idleTimer);
    this.forwarder.closePool(this.handle);
  }

  figure(slot: number): number {
    return this.figures[slot] ?? 0;
  }

  waits(): NativeWaits {
    return {
      key: this.key,
      count: this.figure(PoolFigure.WaitCount),
      sumSeconds: this.figure(PoolFigure.WaitSumMicros) / 1e6,
      buckets: [...this.figures.subarray(PoolFigure.WaitBuckets)],
    };
  }

  connectionIds(): number[] {
    return [...this.leases.keys()];
  }

  /** The connection with this id, while the thread holds it. */
  server(id: number): PooledServer | undefined {
    return this.leases.get(id)?.connection;
  }

  /**
   * The lease of a connection the thread gave up (Node reads it again), in this transaction status,
   * holding these named statements (undefined: the thread never used it).
   */
  takeOver(id: number, status: 'I' | 'T' | 'E', statements: string[] | undefined): Lease<PooledServer> | undefined {
    const lease = this.leases.get(id);
    if (!lease) return undefined;
    this.leases.delete(id);
    lease.connection.session.takeBack(status);
    // What the thread prepared or closed on it: Node must believe the same, or a client would hear
    // "prepared statement does not exist" or "already exists".
    if (statements) lease.connection.statements.replace(statements);
    return lease;
  }

  reclaim(): void {
    if (this.leases.size > 0) this.forwarder.reclaim(this.handle, 1);
  }

  drain(on: boolean): void {
    this.forwarder.drain(this.handle, on);
  }

  expire(): void {
    if (this.leases.size > 0) this.forwarder.expire(this.handle);
  }

  private want(): void {
    this.registry.acquiring = this;
    let acquired: Promise<Lease<PooledServer>>;
    try {
      acquired = this.ctx.pools.acquire(this.key, undefined, true);
    } finally {
      this.registry.acquiring = undefined;
    }
    this.requests++;
    acquired.then(
      (lease) => {
        this.requests--;
        void this.lend(lease);
      },
      (error: unknown) => {
        this.requests--;
        // A timeout fails the client that waited that long; anything else (a retired version, no
        // server) the client that waited longest.
        const timedOut = error instanceof PoolError && error.reason === 'query_wait_timeout';
        const minWaitMs = timedOut ? Math.max(0, this.ctx.pools.queryWaitTimeoutMs - 50) : 0;
        this.forwarder.failWant(this.handle, poolErrorFields(error), minWaitMs);
      },
    );
  }

  private async lend(lease: Lease<PooledServer>): Promise<void> {
    const server = lease.connection;
    const sync = parameterSync(this.parameters, (name) => server.parameter(name));
    if (sync) {
      // The connection last served other values: it takes the pool's before the thread gets it.
      try {
        await server.session.simpleQuery(sync.sql);
        for (const name of sync.names) if (!this.ctx.tracked.isReported(name)) server.unreported.set(name, this.parameters.get(name) ?? null);
      } catch (error) {
        this.ctx.logger.warn({ err: (error as Error).message }, 'a server connection refused the parameters of natively forwarded clients; they go on in Node');
        this.inNode(lease, { broken: !server.usable });
        return;
      }
    }
    const fd = server.session.lendDescriptor();
    if (fd === undefined) {
      // No plain descriptor (a TLS upstream) or bytes Node holds: this client goes on in Node.
      this.inNode(lease);
      return;
    }
    this.leases.set(server.id, lease);
    server.client = undefined;
    try {
      this.forwarder.lend(this.handle, fd, server.id, lease.lifetimeLeftMs(), server.statements.list(), server.statements.capacity);
    } catch (error) {
      this.takeOver(server.id, 'I', undefined);
      this.ctx.logger.warn({ err: (error as Error).message }, 'could not lend a server connection to the native forwarder; the client goes on in Node');
      this.inNode(lease);
    }
  }

  /** The thread cannot use this connection: it goes back to the pool, and the client that waited longest to Node. */
  private inNode(lease: Lease<PooledServer>, options?: ReleaseOptions): void {
    lease.release(options);
    this.forwarder.handBackWaiter(this.handle);
  }

  private returned(id: number, status: 'I' | 'T' | 'E', broken: boolean, statements: string[] | undefined): void {
    const lease = this.takeOver(id, status, statements);
    if (!lease) return;
    lease.connection.requestAt = Date.now();
    // Left in a transaction (its client went away), the pool rolls it back; mid-answer, it is closed.
    lease.release({ broken });
  }
}

/** What the native pooled forwarding tells the session it belongs to. */
export interface NativePooledEvents {
  ended(end: NativeEnd): void;
  /**
   * The thread gave the client back: forward it in Node from here, on `socket`, with `held` (what it
   * sent that was not forwarded), the server connection it holds, if any, its parameters now, and
   * its named statements (PreparedStatements.adopt).
   */
  handedBack(socket: net.Socket, held: Buffer, lease: Lease<PooledServer> | undefined, parameters: ParameterValues, statements: Buffer): void;
}

/** One client of a NativePool, as the session, the admin console and the status see it. */
export class NativePooledForwarding {
  /** The thread reported the end: the handle names nothing any more. */
  private threadDone = false;
  readonly pinned = undefined;

  private constructor(
    private readonly forwarder: NativeForwarder,
    private readonly pool: NativePool,
    private readonly counters: Float64Array,
    private readonly events: NativePooledEvents,
    /** The client's values; `shared`: its learned login's, copied before the first change. */
    private parameters: ParameterValues,
    private handle: NativeHandle = undefined as unknown as NativeHandle,
    private shared = false,
  ) {}

  /** Hands the client to the thread, or returns undefined when it cannot take it (forward in Node). */
  static start(
    forwarder: NativeForwarder,
    client: net.Socket,
    key: PoolKey,
    ctx: PooledContext,
    counters: Float64Array,
    events: NativePooledEvents,
    sessionId: number,
    parameters: ParameterValues,
    held: Buffer,
  ): NativePooledForwarding | undefined {
    let registry = registries.get(ctx.pools);
    if (!registry) {
      registry = new NativePools(forwarder, ctx);
      registries.set(ctx.pools, registry);
    }
    const pool = registry.poolFor(key, parameters);
    if (!pool) return undefined;
    const forwarding = new NativePooledForwarding(forwarder, pool, counters, events, parameters);
    const handle = forwarder.takePooled(sessionId, client, counters, held, pool.handle, forwarding.onParameter, forwarding.onEnd);
    if (!handle) return undefined;
    forwarding.handle = handle;
    pool.joined();
    return forwarding;
  }

  /**
   * A client the thread logged in itself (native-login.ts) with a login learned from a client of
   * `pool`: it is already the thread's, under `threadId`. `parameters`: the learned login's, shared
   * (most such clients change none: a connection per transaction need not copy them).
   */
  static adopt(
    forwarder: NativeForwarder,
    pool: NativePool,
    counters: Float64Array,
    events: NativePooledEvents,
    parameters: ParameterValues,
    threadId: number,
    handle: NativeHandle,
  ): NativePooledForwarding {
    const forwarding = new NativePooledForwarding(forwarder, pool, counters, events, parameters, handle, true);
    forwarder.adopt(threadId, forwarding.onParameter, forwarding.onEnd);
    pool.joined();
    return forwarding;
  }

  get key(): PoolKey {
    return this.pool.key;
  }

  /** The thread's pool the client is in (a login learned from it joins it too). */
  get threadPool(): NativePool {
    return this.pool;
  }

  /** The server connection the client holds now, if any. */
  get server(): PooledServer | undefined {
    const id = this.counters[Counter.ServerId] ?? 0;
    return id > 0 ? this.pool.server(id) : undefined;
  }

  /** When the client started waiting for a server connection (0: not waiting). */
  get waitingSince(): number {
    return this.counters[Counter.WaitingSince] ?? 0;
  }

  get transactions(): number {
    return this.counters[Counter.Transactions] ?? 0;
  }

  get heldMicros(): number {
    return Math.round(this.counters[Counter.HeldMicros] ?? 0);
  }

  get waitedMicros(): number {
    return Math.round(this.counters[Counter.WaitedMicros] ?? 0);
  }

  get requests(): number {
    return this.counters[Counter.Requests] ?? 0;
  }

  /** The client's named statements (SHOW CLIENTS prepared_statements). */
  get preparedStatements(): number {
    return this.counters[Counter.PreparedStatements] ?? 0;
  }

  get requestMicros(): number {
    return Math.round(this.counters[Counter.RequestMicros] ?? 0);
  }

  /** The client's next request outside a transaction gets this error (the thread applies it). */
  retire(message: string): void {
    if (!this.threadDone) this.forwarder.retire(this.handle, encodeErrorResponse(retiredError(message)));
  }

  /** Ends the session with an error to the client where its stream allows one; the thread reports the end. */
  end(error: ErrorFields | undefined): void {
    if (!this.threadDone) this.forwarder.terminate(this.handle, error ? encodeErrorResponse(error) : Buffer.alloc(0));
  }

  /** The session is over on the proxy's side: the thread ends it (and settles its connection). */
  stop(): void {
    this.end(undefined);
  }

  /** The server reported a parameter: the client's value now, and the connection's (the thread hands the client back next). */
  private readonly onParameter = (name: string, value: string, serverId: number): void => {
    const tracked = this.pool.ctx.tracked.trackedName(name);
    if (tracked) {
      if (this.shared) {
        this.parameters = new Map(this.parameters);
        this.shared = false;
      }
      this.parameters.set(tracked, value);
    }
    if (serverId > 0) this.pool.server(serverId)?.session.noteReported(name, value);
  };

  private readonly onEnd = (end: NativeEnd): void => {
    this.threadDone = true;
    this.pool.left();
    const pooled = end.pooled;
    if (end.reason === 'handed_back' && pooled?.fd !== undefined) {
      const serverStatements = pooled.serverStatements && decodeStatementNames(pooled.serverStatements);
      const lease = pooled.serverId ? this.pool.takeOver(pooled.serverId, pooled.status ?? 'I', serverStatements) : undefined;
      // Node's forwarding changes the values it is given: never the learned login's.
      const parameters = this.shared ? new Map(this.parameters) : this.parameters;
      this.events.handedBack(new net.Socket({ fd: pooled.fd, readable: true, writable: true }), pooled.held ?? Buffer.alloc(0), lease, parameters, pooled.statements ?? Buffer.alloc(0));
      return;
    }
    this.events.ended(end);
  };

  /** The client's value of a carried parameter now (SHOW CLIENTS' application_name). */
  parameter(name: string): string | undefined {
    return this.parameters.get(name) ?? undefined;
  }
}
