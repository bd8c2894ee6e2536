/**
 * One client session: owns the client's connection (client.ts) and its server connection, and moves
 * the session between its phases; what each phase does is in its own module.
 *
 *   startup     reading SSLRequest / GSSENCRequest / CancelRequest / StartupMessage  (startup.ts)
 *   cancelling  a CancelRequest was passed on; waiting for the server to close it, then closing
 *   routing     resolving the version (startup.ts) and opening the server connection (server-connection.ts)
 *   auth        relaying the server's authentication exchange, message by message   (auth.ts),
 *               or, when the proxy pools, running it itself against the stored secret (auth/client-auth.ts),
 *               or, in passthrough, asking for the password and letting the server judge it (auth/passthrough.ts)
 *   forwarding  bytes both ways, only frame headers looked at: in Node, or (plain TCP on both
 *               sides, when the native forwarder is loaded) by its thread after a hand-over (forwarding.ts)
 *               or, pooled, message by message with a server connection borrowed per transaction or
 *               session (pooled.ts)
 *   admin       logged in to the admin console (admin.ts)
 *   closed      with the reason why (close-reason.ts)
 *
 * Every failure ends this session only: it becomes an ErrorResponse to the client where the protocol
 * allows one, a log line, and a metric.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../../observe/logger.js';
import type { VersionInfo } from '../../state/versions.js';
import type { Catalogs } from '../catalog.js';
import type { ErrorKind, ProxyMetrics } from '../metrics.js';
import { newCancelKey } from '../cancel.js';
import { COUNTER_SLOTS, Counter, idleDescriptor, type NativeEnd, type NativeForwarder, type NativeHandle, type NativeLoginReport } from '../native.js';
import { FrameReader, MAX_STARTUP_PACKET_LENGTH, ProtocolError } from '../protocol/frames.js';
import { MessageType, SERVER_CLOSED_UNEXPECTEDLY, encodeErrorResponse, encodeMessage, type ErrorFields, type StartupParams } from '../protocol/messages.js';
import { routeRequest, versionOfSearchPath, type RoutingOptions } from '../routing.js';
import type { UpstreamTarget } from '../upstream.js';
import type { SessionUsage } from '../usage.js';
import { ClientAuthenticator, type ClientAuthStep, type ServerCredentials } from '../auth/client-auth.js';
import { cleartextRefusal } from '../auth/passthrough.js';
import type { ParameterValues } from '../pool/client-parameters.js';
import type { Lease, PoolKey } from '../pool/pool.js';
import type { PooledServer } from '../pool/pooled-server.js';
import { AuthRelay, type AuthStep } from './auth.js';
import { ClientConnection, endClient } from './client.js';
import { closeReasonOfNativeEnd, type CloseReason, type ToldCloseReason } from './close-reason.js';
import { NodeForwarding, handOverToNative, nativeCanForward, retiredError, type ForwardingEvents } from './forwarding.js';
import { connectServer, sendStartup } from './server-connection.js';
import type { AdminSource } from '../admin/source.js';
import { adminLoginRefusal, type AdminUsers } from '../admin/users.js';
import { AdminConversation, adminWelcome } from './admin.js';
import { NativePooledForwarding } from './native-pooled.js';
import { versionSignature, type LearnedLogin, type NativeLogins } from './native-login.js';
import { PooledForwarding, poolErrorFields, type PooledEnd, type Pooling } from './pooled.js';
import { MAX_AUTH_MESSAGE_LENGTH, readStartupRequest, routeLogin, type LoginRoute } from './startup.js';

const AUTHENTICATION_OK = encodeMessage(MessageType.Authentication, Buffer.alloc(4));
const READY_IDLE = encodeMessage(MessageType.ReadyForQuery, Buffer.from('I'));
const NOTHING = Buffer.alloc(0);

const INTERNAL_ERROR: ToldCloseReason = { kind: 'internal', error: { severity: 'FATAL', code: 'XX000', message: 'internal error in the tandem proxy' } };

/** What a session needs from the proxy around it. */
export interface SessionContext {
  readonly tls: tls.SecureContext | undefined;
  readonly loginTimeoutMs: number;
  readonly routing: RoutingOptions;
  readonly upstream: UpstreamTarget;
  readonly catalogs: Catalogs;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  /** Set when plain-TCP sessions are to be handed to the native forwarder after login. */
  readonly forwarder: NativeForwarder | undefined;
  /** Set with --pool-mode session|transaction: the proxy authenticates clients and serves them from pools. */
  readonly pooling: Pooling | undefined;
  /**
   * Resolves to an error while the upstream fails the check that it carries the search_path startup
   * parameter (upstream-check.ts); asked before a versioned login is relayed.
   */
  upstreamCheck(): Promise<ErrorFields | undefined>;
  /** The admin console: logins to its database by its users are answered by it (pooled modes). */
  readonly admin: { readonly database: string; readonly users: AdminUsers; readonly source: AdminSource } | undefined;
  /** Set with --native-login on: JavaScript's trust logins are taught to the native thread. */
  readonly nativeLogins?: NativeLogins;
  /** A connection to the upstream failed: the next versioned login checks it again. */
  upstreamUnreachable(): void;
  /** An error when this session must be refused (read once its startup packet is in); else it counts as admitted. */
  admissionError(session: Session): ErrorFields | undefined;
  /** Relays a cancel request; resolves when the server has taken it. */
  cancel(key: Buffer, from: string): Promise<void>;
  /** `upstreamKey`: for a pooled session, the key of the server connection it holds now. */
  registerCancelKey(key: Buffer, session: Session, upstreamKey?: () => Buffer | undefined): void;
  ready(session: Session): void;
  closed(session: Session, reason: CloseReason): void;
}

/** What the session knows once logged in, for the search_path the server reports later. */
interface LoggedIn {
  readonly database: string;
  /** The version the session was routed to (the database name's, or its own search_path's at login). */
  readonly routedVersion: VersionInfo | undefined;
}

type SessionState =
  | { readonly phase: 'startup' }
  | { readonly phase: 'cancelling' }
  | { readonly phase: 'routing' }
  | { readonly phase: 'auth'; readonly by: 'relay'; readonly server: net.Socket; readonly database: string; readonly relay: AuthRelay }
  /** Pooled: the proxy runs the exchange itself against the user's stored secret; no route: the admin console. */
  | { readonly phase: 'auth'; readonly by: 'proxy'; readonly pooling: Pooling; readonly database: string; readonly route: LoginRoute | undefined; readonly authenticator: ClientAuthenticator }
  /** Logged in to the admin console. */
  | { readonly phase: 'admin'; readonly conversation: AdminConversation }
  /** Logged in; waits for the writes of the login to go out before the native thread takes the sockets. */
  | {
      readonly phase: 'forwarding';
      readonly by: 'handover';
      readonly server: net.Socket;
      readonly login: LoggedIn;
      readonly forwarder: NativeForwarder;
      /** Bytes read past ReadyForQuery, kept while the corked writes before the hand-over go out. */
      readonly rest: { toClient: Buffer; toServer: Buffer };
    }
  | { readonly phase: 'forwarding'; readonly by: 'node'; readonly server: net.Socket; readonly login: LoggedIn; readonly node: NodeForwarding }
  /** Served from a pool: a server connection is borrowed per transaction (or for the session). */
  | { readonly phase: 'forwarding'; readonly by: 'pool'; readonly login: LoggedIn; readonly pooled: PoolClient }
  /** The native thread has the sockets (Node's are destroyed) until it reports the end. */
  | { readonly phase: 'forwarding'; readonly by: 'native'; readonly login: LoggedIn; readonly forwarder: NativeForwarder; readonly handle: NativeHandle }
  /** `pooled`: a pooled session's forwarding, whose figures SHOW STATS keeps after the end. */
  | { readonly phase: 'closed'; readonly reason: CloseReason; readonly forwardedBy: 'node' | 'native' | undefined; readonly pooled?: PoolClient };

export type Phase = SessionState['phase'];
type AuthState = Extract<SessionState, { phase: 'auth'; by: 'relay' }>;
type ProxyAuthState = Extract<SessionState, { phase: 'auth'; by: 'proxy' }>;
type ForwardingState = Extract<SessionState, { phase: 'forwarding' }>;

/** A pooled client: forwarded in Node, or by the native thread, which passes its pool's connections between transactions. */
export type PoolClient = PooledForwarding | NativePooledForwarding;
type HandOverState = Extract<SessionState, { by: 'handover' }>;

let nextId = 1;

export class Session implements SessionUsage {
  readonly id = nextId++;
  readonly clientAddress: string;
  readonly startedAt = Date.now();
  database: string | undefined;
  user: string | undefined;
  version: VersionInfo | undefined;
  cancelKey: Buffer | undefined;
  /** Bytes, queries, last query: bumped in Node, written in place by the native thread. */
  private readonly counters: Float64Array;
  private state: SessionState = { phase: 'startup' };

  private readonly client: ClientConnection;
  private readonly clientReader = new FrameReader(MAX_STARTUP_PACKET_LENGTH);
  private readonly loginTimer: NodeJS.Timeout | undefined;
  /** The startup packet's body, when a login like this one could be taught to the native thread. */
  private loginBody: Buffer | undefined;
  private retiredMessage: string | undefined;
  /** The search_path the client set in its startup packet (pooled sessions open their server connections with it). */
  private clientSearchPath: string | undefined;
  /** Pooled: the tracked parameters the client asked for at login, carried to its server connections. */
  private askedParameters: ParameterValues = new Map();
  /**
   * What the session's end is called if nothing more telling comes first: the last socket error,
   * the server's refusal, the proxy's own verdict. `closed` keeps it.
   */
  private cause: CloseReason = { kind: 'client_closed' };

  /**
   * `socket`: a client to log in, with what the native listener already read of it (`held`); or a
   * client the native thread logged in itself (`native`), which it forwards.
   */
  constructor(
    socket: net.Socket | undefined,
    private readonly ctx: SessionContext,
    held?: Buffer,
    native?: { learned: LearnedLogin; login: NativeLoginReport },
  ) {
    const listeners = { data: this.onClientData, error: this.onClientError, close: this.onClientClose, notPostgresql: this.onNotPostgresql };
    this.client = new ClientConnection(socket, ctx.tls, listeners, native?.login.address, native?.login.localAddress);
    this.clientAddress = this.client.address;
    this.counters = native?.login.counters ?? new Float64Array(COUNTER_SLOTS);
    if (native) {
      this.loginTimer = undefined;
      this.loggedInNatively(native.learned, native.login);
      return;
    }
    this.loginTimer = setTimeout(this.onLoginTimeout, ctx.loginTimeoutMs);
    // After the caller has registered the session, and before the socket's own reads.
    if (held && held.length > 0) process.nextTick(() => this.onClientData(held));
  }

  get phase(): Phase {
    return this.state.phase;
  }

  /** The client connection as SHOW CLIENTS lists it: the proxy's end of it and its TLS, '' in clear. */
  get clientSocket(): { localAddress: string; localPort: number; tls: string } {
    return { localAddress: this.client.localAddress, localPort: this.client.localPort, tls: this.client.tlsDescription };
  }

  /** Logged in; stays true once closed, so that the ledger keeps an ended session's counts. */
  get established(): boolean {
    return this.state.phase === 'forwarding' || (this.state.phase === 'closed' && this.state.forwardedBy !== undefined);
  }

  /** Which path forwards (or forwarded) the session's bytes once logged in (for the log lines). */
  get forwardedBy(): 'node' | 'native' | undefined {
    const state = this.state;
    if (state.phase === 'closed') return state.forwardedBy;
    if (state.phase !== 'forwarding' || state.by === 'handover') return undefined;
    return state.by === 'native' || (state.by === 'pool' && state.pooled instanceof NativePooledForwarding) ? 'native' : 'node';
  }

  get versionSchema(): string | undefined {
    return this.version?.versionSchema;
  }

  get queries(): number {
    return this.counters[Counter.Queries] ?? 0;
  }

  get lastQueryAt(): number {
    return this.counters[Counter.LastQueryAt] ?? 0;
  }

  get bytesIn(): number {
    return this.counters[Counter.BytesIn] ?? 0;
  }

  get bytesOut(): number {
    return this.counters[Counter.BytesOut] ?? 0;
  }

  /** Marks the session's version as gone: its next message gets this error instead of an answer. */
  retire(message: string): void {
    const state = this.state;
    if (state.phase === 'closed' || this.retiredMessage !== undefined) return;
    this.retiredMessage = message;
    // A session that has not finished logging in is told at once; it has sent nothing to spoil.
    if (state.phase !== 'forwarding') this.fatal({ kind: 'refused', why: 'retired_version', error: retiredError(message) }, 'retired_version');
    else if (state.by === 'native') state.forwarder.retire(state.handle, encodeErrorResponse(retiredError(message)));
    else if (state.by === 'node') state.node.retire(message);
    else if (state.by === 'pool') state.pooled.retire(message);
    // A hand-over under way passes it on once the thread has the session.
  }

  /** Ends the session from the proxy's side (shutdown after the grace period). */
  terminate(reason: ToldCloseReason): void {
    this.fatal(reason);
  }

  // ---- startup -------------------------------------------------------------------------------

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.client.startsDirectTls(chunk)) return;
    this.clientReader.push(chunk);
    try {
      const state = this.state;
      if (state.phase === 'startup') this.readStartup();
      else if (state.phase === 'auth' && state.by === 'relay') this.relayClientAuth(state);
      else if (state.phase === 'auth') this.proxyClientAuth(state);
      // In 'routing' the bytes wait in the reader until the upstream connection exists; a client
      // has no business sending much before it is asked for a password.
      else if (this.clientReader.pending > MAX_AUTH_MESSAGE_LENGTH) throw new ProtocolError('too much data before authentication');
    } catch (error) {
      this.failOnInput(error);
    }
  };

  private readStartup(): void {
    while (this.state.phase === 'startup') {
      const request = readStartupRequest(this.clientReader);
      if (!request) return;
      switch (request.kind) {
        case 'terminate':
          // PostgreSQL closes such a connection without a word (an impossible startup length); a
          // client that gave up before logging in must not get an error it may choke on.
          this.ctx.logger.debug({ session: this.id, client: this.clientAddress }, 'client sent Terminate instead of a startup packet');
          this.cause = { kind: 'client_terminated', before: 'startup_packet' };
          this.client.socket.end();
          this.finish();
          return;
        case 'ssl':
          if (this.client.answerSslRequest() === 'tls') return;
          break;
        case 'gssenc':
          this.client.refuseGssEncryption();
          break;
        case 'cancel':
          this.cause = { kind: 'cancel_request' };
          this.state = { phase: 'cancelling' };
          // The client's connection stays open until the server has closed the forwarded one, as
          // PostgreSQL's does: a client that waits for that close (libpq, psycopg) knows its cancel
          // has landed, and cannot have it hit the statement it sends next.
          this.client.socket.pause();
          void this.ctx.cancel(request.key, this.clientAddress).finally(() => {
            if (this.isClosed()) return;
            this.client.socket.end();
            this.finish();
          });
          return;
        case 'login':
          // Protocol 3.0 without extensions, in clear: what the native thread can answer alike.
          this.loginBody = !this.client.encrypted && request.protocol === 0x30000 && !request.params.some(([name]) => name.startsWith('_pq_')) ? request.body : undefined;
          this.state = { phase: 'routing' };
          this.clientReader.setMaxLength(MAX_AUTH_MESSAGE_LENGTH);
          this.opening(this.login(request.protocol, request.params));
          return;
      }
    }
  }

  private readonly onNotPostgresql = (): void => {
    this.cause = { kind: 'tls_without_alpn' };
    this.ctx.metrics.error('tls');
    this.finish();
  };

  /** Admission, routing and the server connection, then the authentication relay. */
  private async login(protocol: number, params: StartupParams): Promise<void> {
    const request = routeRequest(params);
    this.database = request.database;
    this.user = params.find(([name]) => name === 'user')?.[1];
    const refusal = this.ctx.admissionError(this);
    if (refusal) {
      this.fatal({ kind: 'refused', why: 'admission', error: refusal });
      return;
    }
    const admin = this.ctx.admin;
    if (admin && request.database === admin.database && request.requestedVersion === undefined) {
      if (!this.ctx.pooling) {
        this.fatal({ kind: 'refused', why: 'authentication', error: { severity: 'FATAL', code: '28000', message: 'the admin console needs --pool-mode session or transaction: the proxy must authenticate its users itself' } });
        return;
      }
      await this.startProxyAuth(this.ctx.pooling, request.database, undefined);
      return;
    }
    const routed = await routeLogin(request, params, this.ctx);
    if (!routed.ok) {
      this.fatal(routed.reason);
      return;
    }
    if (this.isClosed()) return;
    const route = routed.route;
    this.version = route.version;
    if (this.ctx.pooling) {
      // Refused before authentication, as PgBouncer does: nothing about the server is told.
      const asked = this.ctx.pooling.tracked.readStartupParameters(params, this.ctx.pooling.ignoredStartupParameters);
      if (!asked.ok) {
        this.fatal({ kind: 'refused', why: 'startup_parameter', error: asked.error });
        return;
      }
      this.askedParameters = asked.values;
      this.clientSearchPath = request.clientSearchPath;
      await this.startProxyAuth(this.ctx.pooling, request.database, route);
      return;
    }
    if (route.version) {
      const refusal = await this.ctx.upstreamCheck();
      if (refusal) {
        this.fatal({ kind: 'refused', why: 'upstream_check', error: refusal });
        return;
      }
      if (this.isClosed()) return;
    }

    const connected = await connectServer(this.ctx.upstream, this.ctx.metrics);
    if (!connected.ok) {
      this.ctx.upstreamUnreachable();
      this.fatal(connected.reason, 'upstream_connect');
      return;
    }
    const server = connected.server;
    if (this.isClosed()) {
      server.destroy();
      return;
    }
    const relay = new AuthRelay(this.client.socket, server, this.client.encrypted, route, {
      metrics: this.ctx.metrics,
      cancelKey: (key) => {
        this.cancelKey = key;
        this.ctx.registerCancelKey(key, this);
      },
      serverRefused: (code) => {
        this.cause = { kind: 'server_refused', code };
      },
    });
    const auth = { phase: 'auth', by: 'relay', server, database: request.database, relay } as const;
    this.state = auth;
    server.on('data', this.onServerData);
    server.on('error', this.onServerError);
    server.on('close', this.onServerClose);
    server.on('drain', this.resumeClient);
    this.client.socket.on('drain', this.resumeServer);
    sendStartup(server, protocol, route.upstreamParams);
    this.relayClientAuth(auth);
  }

  // ---- pooled login: the proxy authenticates -------------------------------------------------

  private async startProxyAuth(pooling: Pooling, database: string, route: LoginRoute | undefined): Promise<void> {
    const user = this.user ?? '';
    if (pooling.authType === 'passthrough') {
      // Refused before the client sends its password, not after it crossed the network in clear.
      const refusal = cleartextRefusal(this.client.socket.remoteAddress, this.client.encrypted);
      if (refusal) {
        this.ctx.metrics.authFailure();
        this.fatal({ kind: 'refused', why: 'authentication', error: refusal });
        return;
      }
    }
    let secret;
    try {
      secret = pooling.authType === 'passthrough' ? undefined : await pooling.secretOf(user);
    } catch (error) {
      this.ctx.logger.error({ session: this.id, user, err: (error as Error).message }, 'could not look up the secret of a user');
      this.fatal({ kind: 'internal', error: { severity: 'FATAL', code: '08006', message: `the tandem proxy could not look up the password of user "${user}": ${(error as Error).message}` } }, 'internal');
      return;
    }
    if (this.isClosed()) return;
    const authenticator = new ClientAuthenticator(user, pooling.authType, secret);
    const state: ProxyAuthState = { phase: 'auth', by: 'proxy', pooling, database, route, authenticator };
    this.state = state;
    this.afterProxyAuthStep(state, authenticator.start());
    if (this.state === state) this.proxyClientAuth(state);
  }

  private proxyClientAuth(state: ProxyAuthState): void {
    for (let frame = this.clientReader.nextTyped(); frame && this.state === state; frame = this.clientReader.nextTyped()) {
      if (frame.type === MessageType.Terminate) {
        this.cause = { kind: 'client_terminated', before: 'login' };
        this.finish();
        return;
      }
      this.afterProxyAuthStep(state, state.authenticator.fromClient(frame));
    }
  }

  private afterProxyAuthStep(state: ProxyAuthState, step: ClientAuthStep): void {
    switch (step.next) {
      case 'send':
        this.client.socket.write(step.bytes);
        return;
      case 'fail':
        if (step.error.code.startsWith('28')) this.ctx.metrics.authFailure();
        this.fatal({ kind: 'refused', why: 'authentication', error: step.error });
        return;
      case 'ok':
        this.authenticated(state, step.bytes, step.credentials);
        return;
      case 'check':
        this.opening(this.checkWithServer(state, step.password));
        return;
    }
  }

  /** A step of the login that runs on its own: whatever it did not foresee ends this session only. */
  private opening(step: Promise<void>): void {
    step.catch((error: unknown) => {
      this.ctx.logger.error({ session: this.id, err: (error as Error).message }, 'unexpected failure while opening a session');
      this.fatal(INTERNAL_ERROR, 'internal');
    });
  }

  /** Passthrough: the server accepts the client's password, or its refusal goes to the client as it is. */
  private async checkWithServer(state: ProxyAuthState, password: string): Promise<void> {
    // Only the next client messages (after ReadyForQuery) may follow now.
    this.state = { phase: 'routing' };
    const route = state.route;
    const key = route && !route.refusalAfterLogin ? this.poolKey(state.pooling, state.database, route, {}) : undefined;
    const refusal = await state.pooling.checkPassword(this.user ?? '', password, key);
    if (this.isClosed()) return;
    if (refusal) {
      if (refusal.code.startsWith('28')) this.ctx.metrics.authFailure();
      this.fatal({ kind: 'refused', why: 'authentication', error: refusal });
      return;
    }
    this.authenticated(state, Buffer.alloc(0), {}, key);
  }

  /** `key`: the client's pool, when the password check already found it. */
  private authenticated(state: ProxyAuthState, bytes: Buffer, credentials: ServerCredentials, key?: PoolKey): void {
    // AuthenticationOk goes out with the welcome when that is at hand: one write, one wake-up of the client.
    const authOk = bytes.length > 0 ? Buffer.concat([bytes, AUTHENTICATION_OK]) : AUTHENTICATION_OK;
    if (!state.route) {
      this.startAdmin(authOk);
      return;
    }
    if (state.route.refusalAfterLogin) {
      this.client.socket.write(authOk);
      this.ctx.metrics.reject('unknown_version');
      this.fatal({ kind: 'refused', why: 'unknown_version', error: state.route.refusalAfterLogin });
      return;
    }
    // After authentication, as PgBouncer: who may not log in learns nothing of the database's state.
    const disabled = state.pooling.loginRefusal(state.database);
    if (disabled) {
      this.client.socket.write(authOk);
      this.ctx.metrics.reject('database_disabled');
      this.fatal({ kind: 'refused', why: 'database_disabled', error: disabled });
      return;
    }
    // Only the next client messages (after ReadyForQuery) may follow now.
    this.state = { phase: 'routing' };
    this.opening(this.welcome(state, key ?? this.poolKey(state.pooling, state.database, state.route, credentials), authOk));
  }

  /**
   * Pooled connections are opened with the search_path only (no client options): the client's own,
   * when it set one, decides the pool, and the version it starts with is the session's.
   */
  private poolKey(pooling: Pooling, database: string, route: LoginRoute, credentials: ServerCredentials): PoolKey {
    const searchPath = route.upstreamParams.find(([name]) => name === 'search_path')?.[1] ?? this.clientSearchPath;
    if (this.clientSearchPath !== undefined) this.version = versionOfSearchPath(this.clientSearchPath, route.versions) ?? this.version;
    return pooling.poolFor(database, this.user ?? '', this.version?.versionSchema ?? '', searchPath, credentials);
  }

  /**
   * The rest of a login as the server would send it: the server's parameters (from a connection
   * of the pool: the first client of a pool waits for it to open), a cancel key of the proxy's own,
   * ReadyForQuery. Session mode keeps the connection it borrowed for this. `authOk` precedes it,
   * or goes out at once when a server connection must be waited for.
   */
  private async welcome(state: ProxyAuthState, key: PoolKey, authOk: Buffer): Promise<void> {
    const pooling = state.pooling;
    let lease: Lease<PooledServer> | undefined;
    let frames = pooling.welcome(key);
    let unsent = authOk;
    if (!frames || pooling.mode === 'session') {
      this.client.socket.write(authOk);
      unsent = NOTHING;
      try {
        lease = await pooling.pools.acquire(key);
      } catch (error) {
        this.fatal({ kind: 'pool_error', error: poolErrorFields(error) });
        return;
      }
      if (this.isClosed()) {
        lease.release();
        return;
      }
      frames = lease.connection.session.parameterFrames;
      if (pooling.mode === 'transaction') {
        lease.release();
        lease = undefined;
      }
    }
    clearTimeout(this.loginTimer);
    const cancelKey = newCancelKey();
    this.cancelKey = cancelKey;
    // The client is told its own values (as it gave them, until a server connection has taken them).
    const parameters = pooling.tracked.clientValues(this.askedParameters, frames);
    this.client.socket.write(Buffer.concat([unsent, pooling.tracked.welcomeFrames(frames, parameters), encodeMessage(MessageType.BackendKeyData, cancelKey), READY_IDLE]));
    this.client.stopReading();
    const login: LoggedIn = { database: state.database, routedVersion: this.version };
    this.ctx.registerCancelKey(cancelKey, this, () => this.pooled?.server?.session.backendKey);
    const rest = this.clientReader.takeRest();
    const native = this.nativePooled(pooling, key, parameters, lease, rest);
    if (native) {
      this.state = { phase: 'forwarding', by: 'pool', login, pooled: native };
      if (this.retiredMessage !== undefined) native.retire(this.retiredMessage);
      this.ctx.ready(this);
      this.teachNativeLogin(state, key, parameters, native, pooling.tracked.welcomeFrames(frames, parameters));
      return;
    }
    const pooled = this.forwardPooledInNode(login, key, pooling, parameters, lease);
    this.ctx.ready(this);
    pooled.start(rest);
  }

  /**
   * A trust login in clear that the thread forwards: the thread may make the next one with the same
   * startup packet itself (native-login.ts). Not when the version list changed since it was routed:
   * it may route elsewhere now.
   */
  private teachNativeLogin(state: ProxyAuthState, key: PoolKey, parameters: ParameterValues, native: NativePooledForwarding, frames: Buffer): void {
    const logins = this.ctx.nativeLogins;
    const body = this.loginBody;
    if (!logins || !body || state.pooling.authType !== 'trust' || !state.route || this.retiredMessage !== undefined) return;
    if (state.route.versions !== this.ctx.catalogs.get(state.database).cached()) return;
    // Disabled while this login went on: the thread must not let the next ones in.
    if (state.pooling.loginRefusal(state.database)) return;
    const packet = Buffer.allocUnsafe(body.length + 4);
    packet.writeInt32BE(body.length + 4, 0);
    body.copy(packet, 4);
    logins.learn(packet, {
      database: state.database,
      user: this.user ?? '',
      version: this.version,
      key,
      pooling: state.pooling,
      // A copy: the teaching session's own values change with its SETs.
      parameters: new Map(parameters),
      pool: native.threadPool,
      welcome: Buffer.concat([AUTHENTICATION_OK, frames]),
      versions: versionSignature(state.route.versions),
    });
  }

  /** Logged in by the native thread with a learned login: forwarded there from the start. */
  private loggedInNatively(learned: LearnedLogin, login: NativeLoginReport): void {
    const forwarder = this.ctx.forwarder!;
    this.database = learned.database;
    this.user = learned.user;
    this.version = learned.version;
    this.cancelKey = login.cancelKey;
    const logins = this.ctx.nativeLogins;
    const events = {
      ended: (end: NativeEnd) => {
        logins?.endSeen(end);
        this.onNativeEnd(end);
      },
      handedBack: (socket: net.Socket, held: Buffer, heldLease: Lease<PooledServer> | undefined, parameters: ParameterValues, statements: Buffer) =>
        this.onHandedBack(learned.pooling, learned.key, parameters, socket, held, heldLease, statements),
    };
    const pooled = NativePooledForwarding.adopt(forwarder, learned.pool, this.counters, events, learned.parameters, login.threadId, login.handle);
    this.state = { phase: 'forwarding', by: 'pool', login: { database: learned.database, routedVersion: learned.version }, pooled };
    this.ctx.registerCancelKey(login.cancelKey, this, () => this.pooled?.server?.session.backendKey);
  }

  /** The session's pooled forwarding in Node, ready to start reading the client. */
  private forwardPooledInNode(
    login: LoggedIn,
    key: PoolKey,
    pooling: Pooling,
    parameters: ParameterValues,
    lease: Lease<PooledServer> | undefined,
    statements?: Buffer,
  ): PooledForwarding {
    const events = { ended: this.onPooledEnd, betweenTransactions: () => this.backToThread(pooling, key) };
    const pooled = new PooledForwarding(this.client.socket, key, pooling, this.counters, events, lease, this.id, parameters, statements);
    if (this.retiredMessage !== undefined) pooled.retire(this.retiredMessage);
    this.state = { phase: 'forwarding', by: 'pool', login, pooled };
    return pooled;
  }

  /**
   * Transaction mode over plain TCP, with the native forwarder loaded: the thread forwards the
   * client and gives it a connection of its pool per transaction (native-pooled.ts). Not with an
   * idle transaction timeout, which only the Node path keeps.
   */
  private nativePooled(pooling: Pooling, key: PoolKey, parameters: ParameterValues, lease: Lease<PooledServer> | undefined, rest: Buffer): NativePooledForwarding | undefined {
    const forwarder = this.ctx.forwarder;
    if (!forwarder || lease || !this.mayPoolNatively(pooling)) return undefined;
    const events = {
      ended: this.onNativeEnd,
      handedBack: (socket: net.Socket, held: Buffer, heldLease: Lease<PooledServer> | undefined, now: ParameterValues, statements: Buffer) =>
        this.onHandedBack(pooling, key, now, socket, held, heldLease, statements),
    };
    try {
      return NativePooledForwarding.start(forwarder, this.client.socket as net.Socket, key, pooling, this.counters, events, this.id, parameters, rest);
    } catch (error) {
      this.ctx.logger.warn({ session: this.id, err: (error as Error).message }, 'the native forwarder could not take the pooled session; forwarding it in Node');
      return undefined;
    }
  }

  private mayPoolNatively(pooling: Pooling): boolean {
    return this.ctx.forwarder !== undefined && pooling.mode === 'transaction' && pooling.idleTransactionTimeoutMs <= 0 && !this.client.encrypted;
  }

  /**
   * A pooled client in Node between two transactions, with nothing Node must keep for it (the thread
   * handed it back for a statement only Node can judge, such as pgjdbc's `SET extra_float_digits`
   * after its login): the thread forwards it again, with its parameters as they are now, so that one
   * such statement does not keep it in Node for the rest of its session.
   */
  private backToThread(pooling: Pooling, key: PoolKey): void {
    const state = this.state;
    if (state.phase !== 'forwarding' || state.by !== 'pool' || !(state.pooled instanceof PooledForwarding) || !this.mayPoolNatively(pooling)) return;
    // Replies still on their way out stay with Node's socket: the next quiet moment will do.
    if (idleDescriptor(this.client.socket as net.Socket) === undefined) return;
    const inNode = state.pooled;
    // The thread's SHOW STATS figures go on from Node's.
    this.counters[Counter.Transactions] = inNode.transactions;
    this.counters[Counter.HeldMicros] = inNode.heldMicros;
    this.counters[Counter.WaitedMicros] = inNode.waitedMicros;
    this.counters[Counter.Requests] = inNode.requests;
    this.counters[Counter.RequestMicros] = inNode.requestMicros;
    inNode.stop();
    const native = this.nativePooled(pooling, key, inNode.parameters, undefined, Buffer.alloc(0));
    if (native) {
      this.state = { ...state, pooled: native };
      this.ctx.logger.debug({ session: this.id }, 'pooled client back to the native forwarder between transactions');
      return;
    }
    const again = this.forwardPooledInNode(state.login, key, pooling, inNode.parameters, undefined);
    carryFigures(again, inNode, 0);
    again.start(Buffer.alloc(0));
  }

  /** The thread gave the client back (it needs the proxy's bookkeeping): Node forwards it from here. */
  private onHandedBack(
    pooling: Pooling,
    key: PoolKey,
    parameters: ParameterValues,
    socket: net.Socket,
    held: Buffer,
    lease: Lease<PooledServer> | undefined,
    statements: Buffer,
  ): void {
    const state = this.state;
    if (state.phase !== 'forwarding' || state.by !== 'pool') {
      lease?.release();
      socket.destroy();
      return;
    }
    const figures = state.pooled;
    this.client.adopt(socket);
    // The client's named statements go on in Node.
    const pooled = this.forwardPooledInNode(state.login, key, pooling, parameters, lease, statements);
    // The figures so far carry over (the lease carried over is not a new transaction).
    carryFigures(pooled, figures, lease ? 1 : 0);
    pooled.start(held);
  }

  private startAdmin(authOk: Buffer): void {
    const admin = this.ctx.admin!;
    const user = this.user ?? '';
    // Refused after authentication, as PgBouncer does: the refusal tells nothing to a stranger.
    if (!admin.users.isAdmin(user)) {
      this.client.socket.write(authOk);
      this.fatal({ kind: 'refused', why: 'authentication', error: adminLoginRefusal(user, admin.database) });
      return;
    }
    clearTimeout(this.loginTimer);
    this.client.stopReading();
    this.client.socket.write(Buffer.concat([authOk, adminWelcome(newCancelKey())]));
    const conversation = new AdminConversation(this.client.socket, admin.source, (error) => {
      if (error) this.cause = { kind: 'client_protocol_violation', error };
      this.finish();
    });
    this.state = { phase: 'admin', conversation };
    this.ctx.logger.info({ session: this.id, client: this.clientAddress, user }, 'admin console login');
    conversation.start(this.clientReader.takeRest());
  }

  private readonly onPooledEnd = (end: PooledEnd): void => {
    switch (end.kind) {
      case 'client_closed':
        this.cause = { kind: 'client_closed' };
        break;
      case 'server_closed':
        this.recordEnding({ kind: 'server_closed' });
        break;
      case 'server_protocol_violation':
        this.recordEnding({ kind: 'server_protocol_violation', detail: end.detail });
        break;
      case 'client_protocol_violation':
        this.recordEnding({ kind: 'client_protocol_violation', error: end.error });
        break;
      case 'retired_version':
        this.recordEnding({ kind: 'retired_version' });
        break;
      case 'pool_error':
        this.cause = { kind: 'pool_error', error: end.error };
        break;
      case 'parameters_refused':
        this.cause = { kind: 'server_refused', code: end.error.code };
        break;
      case 'idle_transaction_timeout':
        this.cause = { kind: 'idle_transaction_timeout', error: end.error };
        break;
    }
    this.finish();
  };

  /** The pooled session the admin console and the status look at, if this is one. */
  get pooled(): PoolClient | undefined {
    const state = this.state;
    return state.phase === 'forwarding' && state.by === 'pool' ? state.pooled : undefined;
  }

  /** The pooled forwarding, also once the session has ended (its figures stay in SHOW STATS). */
  get poolUse(): PoolClient | undefined {
    const state = this.state;
    return state.phase === 'closed' ? state.pooled : this.pooled;
  }

  // ---- authentication relay ------------------------------------------------------------------

  private relayClientAuth(state: AuthState): void {
    this.afterAuthStep(state, state.relay.fromClient(this.clientReader));
  }

  private readonly onServerData = (chunk: Buffer): void => {
    const state = this.state;
    if (state.phase !== 'auth' || state.by !== 'relay') return;
    this.client.socket.cork();
    try {
      const step = state.relay.fromServer(chunk);
      this.version = state.relay.version;
      this.afterAuthStep(state, step);
    } catch (error) {
      const detail = (error as Error).message;
      this.ctx.logger.warn({ session: this.id, err: detail }, 'the server broke the protocol during startup');
      this.fatal({ kind: 'server_protocol_violation', detail, error: { severity: 'FATAL', code: '08P01', message: `protocol error from the server: ${detail}` } }, 'protocol');
    } finally {
      this.client.socket.uncork();
    }
    // After the uncork, so that what the client was sent during login has gone out first.
    const after = this.state;
    if (after.phase === 'forwarding' && after.by === 'handover') this.handOver(after);
  };

  private afterAuthStep(state: AuthState, step: AuthStep): void {
    switch (step.next) {
      case 'continue':
        return;
      case 'ready':
        this.startForwarding(state);
        return;
      case 'close':
        this.cause = step.reason;
        this.finish();
        return;
      case 'fail':
        this.fatal(step.reason);
        return;
    }
  }

  // ---- forwarding ----------------------------------------------------------------------------

  private startForwarding(state: AuthState): void {
    const { server, relay } = state;
    clearTimeout(this.loginTimer);
    this.client.stopReading();
    server.removeListener('data', this.onServerData);
    const rest = { toClient: relay.takeServerRest(), toServer: this.clientReader.takeRest() };
    const login: LoggedIn = { database: state.database, routedVersion: relay.version };
    const forwarder = this.ctx.forwarder;
    if (forwarder && nativeCanForward(this.client.socket, server)) {
      this.state = { phase: 'forwarding', by: 'handover', server, login, forwarder, rest };
      this.ctx.ready(this);
      return;
    }
    const node = this.forwardInNode(server, login);
    this.ctx.ready(this);
    node.start(rest.toClient, rest.toServer);
  }

  private forwardInNode(server: net.Socket, login: LoggedIn): NodeForwarding {
    const node = new NodeForwarding(this.client.socket, server, this.counters, this.forwardingEvents);
    if (this.retiredMessage !== undefined) node.retire(this.retiredMessage);
    this.state = { phase: 'forwarding', by: 'node', server, login, node };
    return node;
  }

  private readonly forwardingEvents: ForwardingEvents = {
    searchPath: (value) => this.onReportedSearchPath(value),
    clientFailed: (error) => this.failOnInput(error),
    serverBrokeProtocol: (detail) => {
      this.recordEnding({ kind: 'server_protocol_violation', detail });
      this.finish();
    },
    retired: (error) => {
      const state = this.state;
      if (state.phase !== 'forwarding') return;
      this.recordEnding({ kind: 'retired_version' });
      this.endForwarding(state, error);
    },
  };

  /**
   * The server reported the session's search_path after login: PostgreSQL 18 reports every change
   * (`SET search_path`). The session counts, and is retired, under the live version that path starts
   * with; a path that starts with no live version leaves it under the version it was routed to.
   */
  private readonly onReportedSearchPath = (value: string): void => {
    const state = this.state;
    if (state.phase !== 'forwarding' || !state.login.routedVersion) return;
    this.version = versionOfSearchPath(value, this.ctx.catalogs.get(state.login.database).cached()) ?? state.login.routedVersion;
  };

  /** When the thread cannot take the sockets, Node forwards after all. */
  private handOver(state: HandOverState): void {
    const { server, login, forwarder, rest } = state;
    const handle = handOverToNative(
      forwarder,
      { id: this.id, client: this.client.socket, server, counters: this.counters, rest, onEnd: this.onNativeEnd, onSearchPath: this.onReportedSearchPath },
      this.ctx.logger,
    );
    if (!handle) {
      this.forwardInNode(server, login).start(rest.toClient, rest.toServer);
      return;
    }
    this.state = { phase: 'forwarding', by: 'native', login, forwarder, handle };
    // Retired while the hand-over waited for the uncork: the thread acts on it from the start.
    if (this.retiredMessage !== undefined) forwarder.retire(handle, encodeErrorResponse(retiredError(this.retiredMessage)));
  }

  /** The native thread ended the session (its sockets are closed or closing there). */
  private readonly onNativeEnd = (end: NativeEnd): void => {
    const reason = closeReasonOfNativeEnd(end);
    if (reason) this.recordEnding(reason);
    this.finish();
  };

  /** Closes a forwarding session with an error to the client where its stream allows one. */
  private endForwarding(state: ForwardingState, error: ErrorFields): void {
    switch (state.by) {
      case 'node':
        state.node.end(error);
        break;
      case 'pool':
        state.pooled.end(error);
        break;
      case 'native':
        // The thread ends it and reports back (onNativeEnd).
        state.forwarder.terminate(state.handle, encodeErrorResponse(error));
        return;
      case 'handover':
        // Where the streams stand is not known yet: no message can be slipped in.
        this.client.socket.destroy();
        state.server.destroy();
        break;
    }
    this.finish();
  }

  private readonly resumeClient = (): void => {
    if (this.state.phase !== 'closed') this.client.socket.resume();
  };

  private readonly resumeServer = (): void => {
    const state = this.state;
    if ('server' in state) state.server.resume();
  };

  // ---- endings -------------------------------------------------------------------------------

  /** Counts and logs an ending alike whichever path forwarded the session (Node, or the native thread). */
  private recordEnding(reason: CloseReason): void {
    switch (reason.kind) {
      case 'server_closed':
        this.ctx.metrics.error('upstream_lost');
        break;
      case 'server_protocol_violation':
        this.ctx.logger.warn({ session: this.id, err: reason.detail }, 'the server broke the protocol');
        this.ctx.metrics.error('protocol');
        break;
      case 'client_protocol_violation':
        this.ctx.logger.warn({ session: this.id, client: this.clientAddress, phase: this.phase, err: reason.error.message }, 'client broke the protocol');
        this.ctx.metrics.error('protocol');
        break;
      case 'retired_version':
        this.ctx.metrics.error('retired_version');
        break;
      case 'native_internal':
        this.ctx.logger.error({ session: this.id, err: reason.detail }, 'unexpected failure in a session');
        this.ctx.metrics.error('internal');
        break;
      default:
        break;
    }
    this.cause = reason;
  }

  private readonly onLoginTimeout = (): void => {
    if (this.state.phase === 'forwarding' || this.state.phase === 'closed') return;
    this.ctx.logger.warn({ session: this.id, client: this.clientAddress, phase: this.phase, timeoutMs: this.ctx.loginTimeoutMs }, 'client login timeout');
    if (this.client.handshaking) {
      // Mid-handshake there is no way to send the client a message it can read.
      this.ctx.metrics.error('login_timeout');
      this.cause = { kind: 'tls_handshake_timeout' };
      this.finish();
      return;
    }
    const error: ErrorFields = { severity: 'FATAL', code: '08006', message: `client login timeout: the session was not established within ${this.ctx.loginTimeoutMs} ms` };
    this.fatal({ kind: 'login_timeout', error }, 'login_timeout');
  };

  private failOnInput(error: unknown): void {
    if (error instanceof ProtocolError) {
      this.ctx.logger.warn({ session: this.id, client: this.clientAddress, phase: this.phase, err: error.message }, 'client broke the protocol');
      this.fatal({ kind: 'client_protocol_violation', error: { severity: 'FATAL', code: error.code, message: error.message } }, 'protocol');
      return;
    }
    this.ctx.logger.error({ session: this.id, err: (error as Error).message }, 'unexpected failure in a session');
    this.fatal(INTERNAL_ERROR, 'internal');
  }

  /** Sends a FATAL error to the client (where the stream allows one) and ends the session. */
  private fatal(reason: ToldCloseReason, metric?: ErrorKind): void {
    const state = this.state;
    if (state.phase === 'closed') return;
    if (metric) this.ctx.metrics.error(metric);
    this.cause = reason;
    if (state.phase === 'forwarding') {
      this.endForwarding(state, reason.error);
      return;
    }
    this.client.fail(reason.error);
    this.finish();
  }

  private readonly onClientError = (error: Error): void => {
    this.cause = { kind: 'client_socket_error', detail: error.message };
  };

  private readonly onClientClose = (): void => {
    const state = this.state;
    if (state.phase === 'closed') return;
    // The client is gone: let the server see end-of-stream after whatever is still queued for it.
    if ('server' in state) state.server.end();
    this.finish();
  };

  private readonly onServerError = (error: Error): void => {
    this.cause = { kind: 'server_socket_error', detail: error.message };
  };

  private readonly onServerClose = (): void => {
    const state = this.state;
    if (state.phase === 'closed') return;
    const node = state.phase === 'forwarding' && state.by === 'node' ? state.node : undefined;
    const clientTerminated = node?.clientTerminated ?? false;
    const serverSentError = state.phase === 'auth' && state.by === 'relay' ? state.relay.serverSentError : node?.lastServerType === MessageType.ErrorResponse;
    if (clientTerminated) this.cause = { kind: 'client_closed' };
    if (!serverSentError && !clientTerminated) {
      this.recordEnding({ kind: 'server_closed' });
      const canWrite = (state.phase !== 'forwarding' || (node?.serverAtBoundary ?? false)) && !this.client.socket.destroyed;
      if (canWrite) endClient(this.client.socket, encodeErrorResponse(SERVER_CLOSED_UNEXPECTEDLY));
      else this.client.socket.destroy();
    } else {
      endClient(this.client.socket);
    }
    this.finish();
  };

  /** Releases everything; idempotent. */
  private finish(): void {
    const state = this.state;
    if (state.phase === 'closed') return;
    const reason = this.cause;
    this.state = { phase: 'closed', reason, forwardedBy: this.forwardedBy, ...(state.phase === 'forwarding' && state.by === 'pool' ? { pooled: state.pooled } : {}) };
    clearTimeout(this.loginTimer);
    if (state.phase === 'forwarding' && state.by === 'node') state.node.stop();
    if (state.phase === 'forwarding' && state.by === 'pool') state.pooled.stop();
    if (state.phase === 'admin') state.conversation.stop();
    if ('server' in state && !state.server.destroyed && !state.server.writableEnded) state.server.destroy();
    if (!this.client.socket.writableEnded) this.client.socket.destroy();
    this.ctx.closed(this, reason);
  }

  /** A method, not a comparison, so TypeScript does not narrow the phase across an await. */
  private isClosed(): boolean {
    return this.state.phase === 'closed';
  }
}

/** SHOW STATS figures of a client that changes forwarder: the new one goes on from the old one's. */
function carryFigures(to: PooledForwarding, from: PoolClient, alreadyCounted: number): void {
  to.transactions += from.transactions - alreadyCounted;
  to.heldMicros += from.heldMicros;
  to.waitedMicros += from.waitedMicros;
  to.requests += from.requests;
  to.requestMicros += from.requestMicros;
}
