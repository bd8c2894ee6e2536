/**
 * Relays the server's authentication exchange, message by message, between a client that has sent
 * its startup packet and the server connection that was sent it, up to ReadyForQuery. The proxy
 * holds no passwords; what it adds is the SCRAM channel-binding policy and the refusal of an
 * unknown version once the server has let the client in.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import type { VersionInfo } from '../../state/versions.js';
import type { ProxyMetrics } from '../metrics.js';
import { FrameReader, type TypedFrame } from '../protocol/frames.js';
import {
  AuthCode,
  MessageType,
  TERMINATE,
  encodeAuthenticationSASL,
  parseAuthRequest,
  parseErrorFields,
  parseParameterStatus,
  parseSASLInitialResponse,
  type ErrorFields,
} from '../protocol/messages.js';
import { versionOfSearchPath } from '../routing.js';
import type { CloseReason, ToldCloseReason } from './close-reason.js';
import type { LoginRoute } from './startup.js';

/** Server messages before ReadyForQuery (ParameterStatus, notices, auth requests). */
const MAX_SERVER_STARTUP_MESSAGE_LENGTH = 1_048_576;

export type AuthStep =
  | { next: 'continue' }
  /** ReadyForQuery went to the client: the session is logged in. */
  | { next: 'ready' }
  | { next: 'close'; reason: CloseReason }
  | { next: 'fail'; reason: ToldCloseReason };

export interface AuthHooks {
  readonly metrics: ProxyMetrics;
  cancelKey(key: Buffer): void;
  /** The server sent an ErrorResponse: the session ends with its word unless something else happens first. */
  serverRefused(code: string): void;
}

export class AuthRelay {
  private readonly serverReader = new FrameReader(MAX_SERVER_STARTUP_MESSAGE_LENGTH);
  private saslOffered = false;
  private saslAnswered = false;
  private serverOfferedPlus = false;
  /** The server's last word was an ErrorResponse, so its closing the connection next is explained. */
  serverSentError = false;
  /** The version the session is routed to; the server's report of the search_path may change it. */
  version: VersionInfo | undefined;

  constructor(
    private readonly client: net.Socket | tls.TLSSocket,
    private readonly server: net.Socket,
    /** The client's TLS ends at the proxy (the channel-binding explanation differs). */
    private readonly clientTls: boolean,
    private readonly route: LoginRoute,
    private readonly hooks: AuthHooks,
  ) {
    this.version = route.version;
  }

  /** Passes on the client's complete messages. */
  fromClient(reader: FrameReader): AuthStep {
    let frame: TypedFrame | undefined;
    while ((frame = reader.nextTyped())) {
      if (frame.type === MessageType.Terminate) return { next: 'close', reason: { kind: 'client_terminated', before: 'login' } };
      if (frame.type === MessageType.PasswordFamily && this.saslOffered && !this.saslAnswered) {
        this.saslAnswered = true;
        const refusal = this.channelBindingRefusal(frame.body);
        if (refusal) return { next: 'fail', reason: { kind: 'refused', why: 'channel_binding', error: refusal } };
      }
      this.server.write(frame.frame);
    }
    return { next: 'continue' };
  }

  /** Passes on the server's complete messages; throws a ProtocolError when the server breaks the protocol. */
  fromServer(chunk: Buffer): AuthStep {
    this.serverReader.push(chunk);
    let frame: TypedFrame | undefined;
    while ((frame = this.serverReader.nextTyped())) {
      const step = this.relayServerFrame(frame);
      if (step.next !== 'continue') return step;
    }
    return { next: 'continue' };
  }

  /** The server's bytes read past ReadyForQuery, for the forwarding that follows. */
  takeServerRest(): Buffer {
    return this.serverReader.takeRest();
  }

  private relayServerFrame(frame: TypedFrame): AuthStep {
    switch (frame.type) {
      case MessageType.Authentication: {
        const request = parseAuthRequest(frame.body);
        if (request.code === AuthCode.SASL) {
          const offered = request.mechanisms ?? [];
          const usable = offered.filter((m) => !m.endsWith('-PLUS'));
          this.saslOffered = true;
          this.serverOfferedPlus = usable.length < offered.length;
          if (usable.length === 0) {
            const error: ErrorFields = {
              severity: 'FATAL',
              code: '28000',
              message: `the server offers only SASL mechanisms that need channel binding (${offered.join(', ')}), which cannot pass through the tandem proxy`,
            };
            return { next: 'fail', reason: { kind: 'refused', why: 'channel_binding', error } };
          }
          this.client.write(encodeAuthenticationSASL(usable));
          return { next: 'continue' };
        }
        this.client.write(frame.frame);
        if (request.code === AuthCode.Ok && this.route.refusalAfterLogin) {
          this.hooks.metrics.reject('unknown_version');
          this.server.end(TERMINATE);
          return { next: 'fail', reason: { kind: 'refused', why: 'unknown_version', error: this.route.refusalAfterLogin } };
        }
        return { next: 'continue' };
      }
      case MessageType.BackendKeyData:
        this.hooks.cancelKey(Buffer.from(frame.body));
        this.client.write(frame.frame);
        return { next: 'continue' };
      case MessageType.ErrorResponse: {
        const code = parseErrorFields(frame.body).get('C') ?? '';
        if (code.startsWith('28')) this.hooks.metrics.authFailure();
        this.hooks.serverRefused(code);
        this.serverSentError = true;
        this.client.write(frame.frame);
        return { next: 'continue' };
      }
      case MessageType.ParameterStatus: {
        // PostgreSQL 18 reports search_path: the value the session really starts with, after the
        // server has read the client's own setting, is the best word on which version it uses.
        const { name, value } = parseParameterStatus(frame.body);
        if (name === 'search_path' && this.route.clientSearchPath && this.version) {
          this.version = versionOfSearchPath(value, this.route.versions) ?? this.version;
        }
        this.client.write(frame.frame);
        return { next: 'continue' };
      }
      case MessageType.ReadyForQuery:
        this.client.write(frame.frame);
        return { next: 'ready' };
      default:
        this.client.write(frame.frame);
        return { next: 'continue' };
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
    const clientTls = this.clientTls;
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
}
