/**
 * One client session: the client socket, its upstream socket, and the state machine between them.
 *
 *   startup     reading SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
 *   cancelling  a CancelRequest was passed on; waiting for the server to close it, then closing
 *   routing     resolving the version and opening the upstream connection
 *   auth        relaying the server's authentication exchange, message by message
 *   forwarding  bytes both ways, only frame headers looked at: in Node, or (plain TCP on both
 *               sides, when the native forwarder is loaded) by its thread after a hand-over
 *   closed
 *
 * Every failure ends this session only: it becomes an ErrorResponse to the client where the protocol
 * allows one, a log line, and a metric.
 */
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type tls from 'node:tls';
import type { Logger } from '../observe/logger.js';
import type { VersionInfo } from '../state/versions.js';
import type { Catalogs } from './catalog.js';
import type { ProxyMetrics } from './metrics.js';
import { COUNTER_SLOTS, Counter, type NativeEnd, type NativeForwarder, type NativeHandle } from './native.js';
import { FrameReader, FrameScanner, MAX_STARTUP_PACKET_LENGTH, ProtocolError, type TypedFrame } from './protocol/frames.js';
import {
  AuthCode,
  MessageType,
  TERMINATE,
  encodeAuthenticationSASL,
  encodeErrorResponse,
  encodeStartupMessage,
  parseAuthRequest,
  parseErrorFields,
  parseParameterStatus,
  parseSASLInitialResponse,
  parseStartupPacket,
  SERVER_CLOSED_UNEXPECTEDLY,
  type ErrorFields,
  type StartupParams,
} from './protocol/messages.js';
import { chooseRoute, routeRequest, versionOfSearchPath, type RoutingOptions } from './routing.js';
import { TLS_HANDSHAKE_BYTE, acceptDirectTls, acceptTls, ALPN_POSTGRESQL } from './tls.js';
import { describeTarget, openUpstream, type UpstreamTarget } from './upstream.js';
import type { SessionUsage } from './usage.js';

/** Client messages before authentication completes are small (passwords, SASL); PostgreSQL caps them alike. */
const MAX_AUTH_MESSAGE_LENGTH = 65_536;
/** Server messages before ReadyForQuery (ParameterStatus, notices, auth requests). */
const MAX_SERVER_STARTUP_MESSAGE_LENGTH = 1_048_576;
/** ParameterStatus bodies read after login (for search_path); native/forwarder.c has the same bound. */
const MAX_PARAMETER_STATUS_BODY = 4096;
/** How long a client that was sent a FATAL error may take to hang up before the socket is destroyed. */
const FATAL_LINGER_MS = 2_000;

const SSL_YES = Buffer.from('S');
const SSL_NO = Buffer.from('N');

function retiredError(message: string): ErrorFields {
  return { severity: 'FATAL', code: '57P01', message };
}

export type Phase = 'startup' | 'cancelling' | 'routing' | 'auth' | 'forwarding' | 'closed';

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
  /** An error when this session must be refused (read once its startup packet is in); else it counts as admitted. */
  admissionError(session: Session): ErrorFields | undefined;
  /** Relays a cancel request; resolves when the server has taken it. */
  cancel(key: Buffer, from: string): Promise<void>;
  registerCancelKey(key: Buffer, session: Session): void;
  ready(session: Session): void;
  closed(session: Session): void;
}

let nextId = 1;

export class Session implements SessionUsage {
  readonly id = nextId++;
  readonly clientAddress: string;
  readonly startedAt = Date.now();
  phase: Phase = 'startup';
  database: string | undefined;
  user: string | undefined;
  version: VersionInfo | undefined;
  cancelKey: Buffer | undefined;
  /** Which path forwards the session's bytes once logged in (for the log lines). */
  forwardedBy: 'native' | 'node' | undefined;
  /** Bytes, queries, last query: bumped here in Node, written in place by the native thread. */
  private readonly counters = new Float64Array(COUNTER_SLOTS);

  private client: net.Socket | tls.TLSSocket;
  private upstream: net.Socket | undefined;
  private readonly clientReader = new FrameReader(MAX_STARTUP_PACKET_LENGTH);
  private upstreamReader: FrameReader | undefined;
  private clientScanner: FrameScanner | undefined;
  private serverScanner: FrameScanner | undefined;
  private loginTimer: NodeJS.Timeout | undefined;
  private tlsState: 'none' | 'handshake' | 'established' = 'none';
  private firstChunk = true;
  private saslOffered = false;
  private saslAnswered = false;
  private serverOfferedPlus = false;
  /** The live versions when the session was routed, to tell which one a reported search_path starts with. */
  private versions: readonly VersionInfo[] = [];
  /** The client set its own search_path: the server's report of it may move the session to another version. */
  private clientSearchPath = false;
  /** The version the session was routed to (the database name's, or its own search_path's at login). */
  private routedVersion: VersionInfo | undefined;
  /** The client named a version that does not exist: told once the server has authenticated it. */
  private refusalAfterLogin: ErrorFields | undefined;
  /** The type of the last message the server started sending, to tell whether it already sent an error. */
  private lastServerType = 0;
  private retiredMessage: string | undefined;
  /** The client sent Terminate: the server hanging up next is the normal end, not a failure. */
  private clientTerminated = false;
  private closeReason = 'client disconnected';
  /** Set while the native forwarder has the session's sockets. */
  private native: NativeHandle | undefined;
  /** Bytes read past ReadyForQuery, kept while the corked writes before a hand-over go out. */
  private handover: { toClient: Buffer; toServer: Buffer } | undefined;

  constructor(
    socket: net.Socket,
    private readonly ctx: SessionContext,
  ) {
    this.client = socket;
    this.clientAddress = `${socket.remoteAddress ?? 'unix'}:${socket.remotePort ?? 0}`;
    socket.setNoDelay(true);
    this.attachClient(socket);
    this.loginTimer = setTimeout(this.onLoginTimeout, ctx.loginTimeoutMs);
  }

  /** Logged in; stays true once closed, so that the ledger keeps an ended session's counts. */
  get established(): boolean {
    return this.phase === 'forwarding' || (this.phase === 'closed' && this.forwardedBy !== undefined);
  }

  get versionSchema(): string | undefined {
    return this.version?.versionSchema;
  }

  get queries(): number {
    return this.counters[Counter.Queries]!;
  }

  get lastQueryAt(): number {
    return this.counters[Counter.LastQueryAt]!;
  }

  get bytesIn(): number {
    return this.counters[Counter.BytesIn]!;
  }

  get bytesOut(): number {
    return this.counters[Counter.BytesOut]!;
  }

  /** Marks the session's version as gone: its next message gets this error instead of an answer. */
  retire(message: string): void {
    if (this.phase === 'closed' || this.retiredMessage !== undefined) return;
    this.retiredMessage = message;
    // A session that has not finished logging in is told at once; it has sent nothing to spoil.
    if (this.phase !== 'forwarding') this.fatal(retiredError(message), 'retired_version');
    else if (this.native) this.ctx.forwarder!.retire(this.native, encodeErrorResponse(retiredError(message)));
  }

  /** Ends the session from the proxy's side (shutdown after the grace period). */
  terminate(fields: ErrorFields, reason: string): void {
    if (this.phase === 'closed') return;
    if (this.phase !== 'forwarding') {
      this.fatal(fields, undefined, reason);
      return;
    }
    this.closeReason = reason;
    // The native thread ends it and reports back (onNativeEnd).
    if (this.native) this.ctx.forwarder!.terminate(this.native, encodeErrorResponse(fields));
    else this.endForwarding(fields);
  }

  // ---- startup -------------------------------------------------------------------------------

  private attachClient(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', this.onClientData);
    socket.on('error', this.onClientError);
    socket.on('close', this.onClientClose);
  }

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.firstChunk) {
      this.firstChunk = false;
      if (chunk[0] === TLS_HANDSHAKE_BYTE && this.ctx.tls && this.tlsState === 'none') {
        this.startTls(acceptDirectTls(this.client as net.Socket, chunk, this.ctx.tls), true);
        return;
      }
    }
    this.clientReader.push(chunk);
    try {
      if (this.phase === 'startup') this.readStartup();
      else if (this.phase === 'auth') this.relayClientAuth();
      // In 'routing' the bytes wait in the reader until the upstream connection exists; a client
      // has no business sending much before it is asked for a password.
      else if (this.clientReader.pending > MAX_AUTH_MESSAGE_LENGTH) throw new ProtocolError('too much data before authentication');
    } catch (error) {
      this.failOnInput(error);
    }
  };

  private readStartup(): void {
    while (this.phase === 'startup') {
      const terminate = this.clientReader.startsWithTerminate();
      if (terminate === undefined && this.clientReader.pending > 0) return;
      if (terminate) {
        // PostgreSQL closes such a connection without a word (an impossible startup length); a
        // client that gave up before logging in must not get an error it may choke on.
        this.ctx.logger.debug({ session: this.id, client: this.clientAddress }, 'client sent Terminate instead of a startup packet');
        this.closeReason = 'client terminated before the startup packet';
        this.client.end();
        this.finish();
        return;
      }
      const body = this.clientReader.nextUntyped();
      if (!body) return;
      const packet = parseStartupPacket(body);
      if (packet.kind === 'ssl') {
        if (this.clientReader.pending > 0) {
          // Bytes sent before the handshake could be injected by a man in the middle (CVE-2021-23214).
          throw new ProtocolError('received unencrypted data after SSL request');
        }
        if (this.ctx.tls && this.tlsState === 'none') {
          this.client.write(SSL_YES);
          this.startTls(acceptTls(this.client as net.Socket, this.ctx.tls), false);
          return;
        }
        this.client.write(SSL_NO);
      } else if (packet.kind === 'gssenc') {
        this.client.write(SSL_NO);
      } else if (packet.kind === 'cancel') {
        this.closeReason = 'cancel request';
        this.phase = 'cancelling';
        // The client's connection stays open until the server has closed the forwarded one, as
        // PostgreSQL's does: a client that waits for that close (libpq, psycopg) knows its cancel
        // has landed, and cannot have it hit the statement it sends next.
        this.client.pause();
        void this.ctx.cancel(packet.key, this.clientAddress).finally(() => {
          if (this.isClosed()) return;
          this.client.end();
          this.finish();
        });
        return;
      } else {
        this.phase = 'routing';
        this.clientReader.setMaxLength(MAX_AUTH_MESSAGE_LENGTH);
        void this.connectUpstream(packet.protocol, packet.params).catch((error: unknown) => {
          this.ctx.logger.error({ session: this.id, err: (error as Error).message }, 'unexpected failure while opening a session');
          this.fatal({ severity: 'FATAL', code: 'XX000', message: 'internal error in the tandem proxy' }, 'internal');
        });
        return;
      }
    }
  }

  private startTls(secure: tls.TLSSocket, direct: boolean): void {
    const raw = this.client;
    raw.removeListener('data', this.onClientData);
    raw.removeListener('error', this.onClientError);
    raw.removeListener('close', this.onClientClose);
    // The TLS socket reports errors of the connection beneath it; this keeps a stray one from throwing.
    raw.on('error', () => {});
    this.client = secure;
    this.tlsState = 'handshake';
    this.attachClient(secure);
    secure.once('secure', () => {
      // A direct-TLS client must name the protocol, as PostgreSQL 17 requires, so that a TLS
      // connection meant for another service is not taken for a PostgreSQL session.
      if (direct && secure.alpnProtocol !== ALPN_POSTGRESQL) {
        this.closeReason = 'direct TLS without ALPN "postgresql"';
        this.ctx.metrics.error('tls');
        this.finish();
        return;
      }
      this.tlsState = 'established';
    });
  }

  private async connectUpstream(protocol: number, params: StartupParams): Promise<void> {
    const request = routeRequest(params);
    this.database = request.database;
    this.user = params.find(([name]) => name === 'user')?.[1];
    const refusal = this.ctx.admissionError(this);
    if (refusal) {
      this.fatal(refusal);
      return;
    }
    let versions;
    try {
      versions = await this.ctx.catalogs.versions(request.database);
    } catch (error) {
      this.ctx.metrics.reject('catalog_unavailable');
      this.fatal(catalogError(error, request.database, this.ctx.upstream));
      return;
    }
    if (this.isClosed()) return;
    const route = chooseRoute(request, versions, this.ctx.routing);
    this.versions = versions;
    this.clientSearchPath = request.clientSearchPath !== undefined;
    const upstreamParams: StartupParams = params.map(([name, value]) => [name, name === 'database' ? request.database : value]);
    if (route.ok) {
      this.version = route.version;
      this.routedVersion = route.version;
      if (route.searchPath) upstreamParams.push(['search_path', route.searchPath]);
    } else {
      // The version list is for clients the server lets in: the login goes to the server as for a
      // known version (with no version search_path) and the refusal follows AuthenticationOk.
      this.refusalAfterLogin = route.error;
    }

    const started = performance.now();
    let upstream: net.Socket;
    try {
      upstream = await openUpstream(this.ctx.upstream);
    } catch (error) {
      this.fatal(
        {
          severity: 'FATAL',
          code: '08006',
          message: `the tandem proxy could not connect to PostgreSQL at ${describeTarget(this.ctx.upstream)}: ${(error as Error).message}`,
          hint: 'The server may be down or restarting; try again shortly.',
        },
        'upstream_connect',
      );
      return;
    }
    this.ctx.metrics.upstreamConnected((performance.now() - started) / 1000);
    if (this.isClosed()) {
      upstream.destroy();
      return;
    }
    this.upstream = upstream;
    this.upstreamReader = new FrameReader(MAX_SERVER_STARTUP_MESSAGE_LENGTH);
    upstream.on('data', this.onUpstreamData);
    upstream.on('error', this.onUpstreamError);
    upstream.on('close', this.onUpstreamClose);
    upstream.on('drain', this.resumeClient);
    this.client.on('drain', this.resumeUpstream);
    // TLS negotiation may have paused it; a 'data' listener alone does not undo an explicit pause.
    upstream.resume();
    upstream.write(encodeStartupMessage(protocol, upstreamParams));
    this.phase = 'auth';
    this.relayClientAuth();
  }

  // ---- authentication relay ------------------------------------------------------------------

  private relayClientAuth(): void {
    let frame: TypedFrame | undefined;
    while (this.phase === 'auth' && (frame = this.clientReader.nextTyped())) {
      if (frame.type === MessageType.Terminate) {
        this.closeReason = 'client gave up during authentication';
        this.finish();
        return;
      }
      if (frame.type === MessageType.PasswordFamily && this.saslOffered && !this.saslAnswered) {
        this.saslAnswered = true;
        const refusal = this.channelBindingRefusal(frame.body);
        if (refusal) {
          this.fatal(refusal);
          return;
        }
      }
      this.upstream!.write(frame.frame);
    }
  }

  /**
   * SCRAM channel binding ties the exchange to the TLS channel the client sees. Through the proxy
   * that is the proxy's (or none), never the server's, so the proxy offers no -PLUS mechanism; what
   * is left to explain depends on which side has TLS:
   *   - a client that binds anyway (-PLUS, flag "p") cannot succeed, whatever the sides;
   *   - a client that says "y" (I could bind, you offered nothing) is fine while the server offers
   *     no -PLUS (the proxy reaches it without TLS), and refused by the server as a downgrade
   *     attack when it does (reached over TLS). The flag is covered by the SCRAM proof, so the
   *     proxy cannot rewrite it; it says why and what to change instead of the server's riddle.
   *   - "n" (no binding) works on every combination.
   */
  private channelBindingRefusal(body: Buffer): ErrorFields | undefined {
    const { mechanism, channelBindingFlag } = parseSASLInitialResponse(body);
    const clientTls = this.tlsState === 'established';
    const clientOff = 'turn channel binding off in the client (libpq: channel_binding=disable; node-postgres: enableChannelBinding: false)';
    if (mechanism.endsWith('-PLUS') || channelBindingFlag.startsWith('p')) {
      return {
        severity: 'FATAL',
        code: '28000',
        message: 'SCRAM channel binding is not possible through the tandem proxy',
        detail: clientTls
          ? 'TLS from the client ends at the proxy, so the client can only bind to the proxy\'s certificate, which the server cannot check.'
          : 'The client reaches the proxy without TLS, so there is no TLS channel to bind to.',
        hint: 'Connect with channel_binding=prefer or channel_binding=disable (libpq), or enableChannelBinding: false (node-postgres).',
      };
    }
    if (channelBindingFlag === 'y' && this.serverOfferedPlus) {
      const why = clientTls
        ? 'The client supports SCRAM channel binding but, its TLS ending at the proxy, saw no offer of it (SCRAM flag "y").'
        : 'The client, though it reaches the proxy without TLS, announces that it supports SCRAM channel binding and saw no offer of it (SCRAM flag "y").';
      return {
        severity: 'FATAL',
        code: '28000',
        message: 'SCRAM login through the tandem proxy needs channel binding disabled in this client',
        detail: `${why} The server, which the proxy reaches over TLS, does offer SCRAM-SHA-256-PLUS and would take that announcement for a downgrade attack; the announcement is covered by the SCRAM proof, so the proxy cannot change it.`,
        hint: clientTls
          ? `Either ${clientOff}, or reach the proxy without TLS with libpq (which then announces no binding), or let the proxy reach the server without TLS (sslmode=disable in its --postgres-url) where that link is trusted.`
          : `Either ${clientOff}, or let the proxy reach the server without TLS (sslmode=disable in its --postgres-url) where that link is trusted.`,
      };
    }
    return undefined;
  }

  private readonly onUpstreamData = (chunk: Buffer): void => {
    const reader = this.upstreamReader!;
    reader.push(chunk);
    this.client.cork();
    try {
      let frame: TypedFrame | undefined;
      while (this.phase === 'auth' && (frame = reader.nextTyped())) this.relayServerAuth(frame);
    } catch (error) {
      this.ctx.logger.warn({ session: this.id, err: (error as Error).message }, 'the server broke the protocol during startup');
      this.fatal({ severity: 'FATAL', code: '08P01', message: `protocol error from the server: ${(error as Error).message}` }, 'protocol');
    } finally {
      this.client.uncork();
    }
    // After the uncork, so that what the client was sent during login has gone out first.
    if (this.handover) this.handOver();
  };

  private relayServerAuth(frame: TypedFrame): void {
    switch (frame.type) {
      case MessageType.Authentication: {
        const request = parseAuthRequest(frame.body);
        if (request.code === AuthCode.SASL) {
          const offered = request.mechanisms ?? [];
          const usable = offered.filter((m) => !m.endsWith('-PLUS'));
          this.saslOffered = true;
          this.serverOfferedPlus = usable.length < offered.length;
          if (usable.length === 0) {
            this.fatal({ severity: 'FATAL', code: '28000', message: `the server offers only SASL mechanisms that need channel binding (${offered.join(', ')}), which cannot pass through the tandem proxy` });
            return;
          }
          this.client.write(encodeAuthenticationSASL(usable));
          return;
        }
        this.client.write(frame.frame);
        if (request.code === AuthCode.Ok && this.refusalAfterLogin) {
          this.ctx.metrics.reject('unknown_version');
          this.upstream!.end(TERMINATE);
          this.fatal(this.refusalAfterLogin);
        }
        return;
      }
      case MessageType.BackendKeyData:
        this.cancelKey = Buffer.from(frame.body);
        this.ctx.registerCancelKey(this.cancelKey, this);
        this.client.write(frame.frame);
        return;
      case MessageType.ErrorResponse: {
        const code = parseErrorFields(frame.body).get('C') ?? '';
        if (code.startsWith('28')) this.ctx.metrics.authFailure();
        this.closeReason = `server refused the session (${code})`;
        this.lastServerType = frame.type;
        this.client.write(frame.frame);
        return;
      }
      case MessageType.ParameterStatus: {
        // PostgreSQL 18 reports search_path: the value the session really starts with, after the
        // server has read the client's own setting, is the best word on which version it uses.
        const { name, value } = parseParameterStatus(frame.body);
        if (name === 'search_path' && this.clientSearchPath && this.version) {
          this.version = versionOfSearchPath(value, this.versions) ?? this.version;
          this.routedVersion = this.version;
        }
        this.client.write(frame.frame);
        return;
      }
      case MessageType.ReadyForQuery:
        this.client.write(frame.frame);
        this.startForwarding();
        return;
      default:
        this.client.write(frame.frame);
    }
  }

  // ---- forwarding ----------------------------------------------------------------------------

  private startForwarding(): void {
    this.phase = 'forwarding';
    clearTimeout(this.loginTimer);
    const upstream = this.upstream!;
    this.client.removeListener('data', this.onClientData);
    upstream.removeListener('data', this.onUpstreamData);
    const fromServer = this.upstreamReader!.takeRest();
    const fromClient = this.clientReader.takeRest();
    this.upstreamReader = undefined;
    this.ctx.ready(this);
    // TLS (either side) stays in Node: the native thread moves bytes, not records.
    const encrypted = (socket: net.Socket | tls.TLSSocket) => (socket as Partial<tls.TLSSocket>).encrypted === true;
    if (this.ctx.forwarder && !encrypted(this.client) && !encrypted(upstream)) {
      this.handover = { toClient: fromServer, toServer: fromClient };
      return;
    }
    this.forwardInNode(fromServer, fromClient);
  }

  private forwardInNode(fromServer: Buffer, fromClient: Buffer): void {
    this.forwardedBy = 'node';
    const upstream = this.upstream!;
    this.clientScanner = new FrameScanner(this.onClientFrame);
    this.serverScanner = new FrameScanner(this.onServerFrame, undefined, {
      type: MessageType.ParameterStatus,
      maxLength: MAX_PARAMETER_STATUS_BODY,
      onBody: (body) => {
        const { name, value } = parseParameterStatus(body);
        if (name === 'search_path') this.onReportedSearchPath(value);
      },
    });
    if (fromServer.length > 0) this.forwardToClient(fromServer);
    if (fromClient.length > 0) this.forwardToServer(fromClient);
    if (this.phase !== 'forwarding') return;
    this.client.on('data', this.forwardToServer);
    upstream.on('data', this.forwardToClient);
  }

  /**
   * The server reported the session's search_path after login: PostgreSQL 18 reports every change
   * (`SET search_path`). The session counts, and is retired, under the live version that path starts
   * with; a path that starts with no live version leaves it under the version it was routed to.
   */
  private readonly onReportedSearchPath = (value: string): void => {
    if (!this.routedVersion || this.phase === 'closed') return;
    const versions = this.database ? this.ctx.catalogs.get(this.database).cached() : this.versions;
    this.version = versionOfSearchPath(value, versions) ?? this.routedVersion;
  };

  /**
   * Gives the sockets to the native thread. Still in Node's hands: nothing is lost or reordered,
   * because nothing is read between here and the sockets' destruction (all synchronous) and the
   * bytes already read go with them. When the thread cannot take them, Node forwards after all.
   */
  private handOver(): void {
    const rest = this.handover!;
    this.handover = undefined;
    if (this.phase !== 'forwarding') return;
    const forwarder = this.ctx.forwarder!;
    let handle: NativeHandle | undefined;
    try {
      handle = forwarder.take(this.id, this.client as net.Socket, this.upstream!, this.counters, rest, this.onNativeEnd, this.onReportedSearchPath);
    } catch (error) {
      this.ctx.logger.warn({ session: this.id, err: (error as Error).message }, 'the native forwarder could not take the session; forwarding it in Node');
    }
    if (!handle) {
      this.forwardInNode(rest.toClient, rest.toServer);
      return;
    }
    this.native = handle;
    this.forwardedBy = 'native';
    // Retired while the hand-over waited for the uncork: the thread acts on it from the start.
    if (this.retiredMessage !== undefined) forwarder.retire(handle, encodeErrorResponse(retiredError(this.retiredMessage)));
  }

  /** The native thread ended the session (its sockets are closed or closing there). */
  private readonly onNativeEnd = (end: NativeEnd): void => {
    this.native = undefined;
    switch (end.reason) {
      case 'client_closed':
        if (end.detail) this.closeReason = `client socket error: ${end.detail}`;
        break;
      case 'server_closed':
        if (!end.explained) {
          this.recordServerLost();
        } else if (end.detail) {
          this.closeReason = `server connection error: ${end.detail}`;
        }
        break;
      case 'client_protocol':
        this.ctx.logger.warn({ session: this.id, client: this.clientAddress, phase: this.phase, err: end.detail }, 'client broke the protocol');
        this.ctx.metrics.error('protocol');
        this.closeReason = `08P01: ${end.detail}`;
        break;
      case 'server_protocol':
        this.recordServerProtocolError(end.detail);
        break;
      case 'retired':
        this.recordRetired();
        break;
      case 'terminated':
        // terminate() already set the reason.
        break;
      case 'internal':
        this.ctx.logger.error({ session: this.id, err: end.detail }, 'unexpected failure in a session');
        this.ctx.metrics.error('internal');
        this.closeReason = `internal error in the native forwarder: ${end.detail}`;
        break;
    }
    this.finish();
  };

  private readonly forwardToServer = (chunk: Buffer): void => {
    // Bytes can still arrive after the proxy ended the session; they have nowhere to go.
    if (this.phase === 'closed') return;
    const scanner = this.clientScanner!;
    if (this.retiredMessage !== undefined && scanner.atBoundary) {
      this.recordRetired();
      this.endForwarding(retiredError(this.retiredMessage));
      return;
    }
    this.counters[Counter.BytesIn] = this.bytesIn + chunk.length;
    try {
      scanner.scan(chunk);
    } catch (error) {
      this.failOnInput(error);
      return;
    }
    // Backpressure: stop reading the client while the server has not taken what we gave it.
    if (!this.upstream!.write(chunk)) this.client.pause();
  };

  private readonly forwardToClient = (chunk: Buffer): void => {
    if (this.phase === 'closed') return;
    this.counters[Counter.BytesOut] = this.bytesOut + chunk.length;
    try {
      this.serverScanner!.scan(chunk);
    } catch (error) {
      this.recordServerProtocolError((error as Error).message);
      this.finish();
      return;
    }
    if (!this.client.write(chunk)) this.upstream!.pause();
  };

  private readonly onClientFrame = (type: number): void => {
    if (type === MessageType.Query || type === MessageType.Execute) {
      this.counters[Counter.Queries] = this.queries + 1;
      this.counters[Counter.LastQueryAt] = Date.now();
    } else if (type === MessageType.Terminate) {
      this.clientTerminated = true;
    }
  };

  private readonly onServerFrame = (type: number): void => {
    this.lastServerType = type;
  };

  private readonly resumeClient = (): void => {
    if (this.phase !== 'closed') this.client.resume();
  };

  private readonly resumeUpstream = (): void => {
    if (this.phase !== 'closed') this.upstream?.resume();
  };

  /**
   * Closes a forwarding session with an error to the client, written only between two server
   * messages (anywhere else it would corrupt the stream) and a Terminate to the server when the
   * client's stream is between messages too.
   */
  private endForwarding(fields: ErrorFields): void {
    const upstream = this.upstream!;
    if (this.serverScanner?.atBoundary && !this.client.destroyed) {
      this.client.end(encodeErrorResponse(fields));
      this.lingerThenDestroy();
    } else {
      this.client.destroy();
    }
    if (this.clientScanner?.atBoundary) upstream.end(TERMINATE);
    else upstream.destroy();
    this.finish();
  }

  // ---- endings -------------------------------------------------------------------------------

  // Outcomes recorded alike whichever path forwarded the session (Node here, or onNativeEnd).

  private recordServerLost(): void {
    this.ctx.metrics.error('upstream_lost');
    this.closeReason = 'server closed the connection';
  }

  private recordServerProtocolError(detail: string): void {
    this.ctx.logger.warn({ session: this.id, err: detail }, 'the server broke the protocol');
    this.ctx.metrics.error('protocol');
    this.closeReason = 'server protocol error';
  }

  private recordRetired(): void {
    this.ctx.metrics.error('retired_version');
    this.closeReason = 'version retired';
  }

  private readonly onLoginTimeout = (): void => {
    if (this.phase === 'forwarding' || this.phase === 'closed') return;
    this.ctx.logger.warn({ session: this.id, client: this.clientAddress, phase: this.phase, timeoutMs: this.ctx.loginTimeoutMs }, 'client login timeout');
    if (this.tlsState === 'handshake') {
      // Mid-handshake there is no way to send the client a message it can read.
      this.ctx.metrics.error('login_timeout');
      this.closeReason = 'login timeout during TLS handshake';
      this.finish();
      return;
    }
    this.fatal(
      { severity: 'FATAL', code: '08006', message: `client login timeout: the session was not established within ${this.ctx.loginTimeoutMs} ms` },
      'login_timeout',
    );
  };

  private failOnInput(error: unknown): void {
    if (error instanceof ProtocolError) {
      this.ctx.logger.warn({ session: this.id, client: this.clientAddress, phase: this.phase, err: error.message }, 'client broke the protocol');
      this.fatal({ severity: 'FATAL', code: error.code, message: error.message }, 'protocol');
      return;
    }
    this.ctx.logger.error({ session: this.id, err: (error as Error).message }, 'unexpected failure in a session');
    this.fatal({ severity: 'FATAL', code: 'XX000', message: 'internal error in the tandem proxy' }, 'internal');
  }

  /** Sends a FATAL error to the client (where the stream allows one) and ends the session. */
  private fatal(fields: ErrorFields, kind?: Parameters<ProxyMetrics['error']>[0], reason?: string): void {
    if (this.phase === 'closed') return;
    if (kind) this.ctx.metrics.error(kind);
    this.closeReason = reason ?? `${fields.code}: ${fields.message}`;
    if (this.phase === 'forwarding') {
      this.endForwarding(fields);
      return;
    }
    if (!this.client.destroyed && this.tlsState !== 'handshake') {
      this.client.end(encodeErrorResponse(fields));
      this.lingerThenDestroy();
    }
    this.finish();
  }

  private lingerThenDestroy(): void {
    const client = this.client;
    setTimeout(() => client.destroy(), FATAL_LINGER_MS).unref();
  }

  private readonly onClientError = (error: Error): void => {
    this.closeReason = `client socket error: ${error.message}`;
  };

  private readonly onClientClose = (): void => {
    if (this.phase === 'closed') return;
    // The client is gone: let the server see end-of-stream after whatever is still queued for it.
    this.upstream?.end();
    this.finish();
  };

  private readonly onUpstreamError = (error: Error): void => {
    this.closeReason = `server connection error: ${error.message}`;
  };

  private readonly onUpstreamClose = (): void => {
    if (this.phase === 'closed') return;
    const serverExplained = this.lastServerType === MessageType.ErrorResponse || this.clientTerminated;
    if (this.clientTerminated) this.closeReason = 'client disconnected';
    if (!serverExplained) {
      this.recordServerLost();
      const canWrite = (this.phase !== 'forwarding' || this.serverScanner!.atBoundary) && !this.client.destroyed;
      if (canWrite) {
        this.client.end(encodeErrorResponse(SERVER_CLOSED_UNEXPECTEDLY));
        this.lingerThenDestroy();
      } else {
        this.client.destroy();
      }
    } else {
      this.client.end();
      this.lingerThenDestroy();
    }
    this.finish();
  };

  /** Releases everything; idempotent. */
  private finish(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    clearTimeout(this.loginTimer);
    this.upstreamReader = undefined;
    if (this.upstream && !this.upstream.destroyed && !this.upstream.writableEnded) this.upstream.destroy();
    if (!this.client.writableEnded) this.client.destroy();
    this.ctx.closed(this);
  }

  /** A method, not a comparison, so TypeScript does not narrow `phase` across an await. */
  private isClosed(): boolean {
    return this.phase === 'closed';
  }

  get reason(): string {
    return this.closeReason;
  }
}

function catalogError(error: unknown, database: string, target: UpstreamTarget): ErrorFields {
  const code = (error as { code?: unknown }).code;
  // The server's own verdict (no such database, no permission) reads best unchanged.
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    // `app@` with an empty version (an unset variable in `app@${VERSION}`) is the database "app@".
    const hint = code === '3D000' && database.endsWith('@') ? `A name ending in "@" is taken as the whole database name; to choose a version, name it after the "@" (e.g. "${database}latest").` : undefined;
    return { severity: 'FATAL', code, message: (error as Error).message, ...(hint ? { hint } : {}) };
  }
  return {
    severity: 'FATAL',
    code: '08006',
    message: `the tandem proxy cannot read the versions of database "${database}" at ${describeTarget(target)}: ${(error as Error).message}`,
    hint: 'The server may be down or restarting; try again shortly.',
  };
}
