/**
 * Why a session ended: a closed set, whichever path forwarded it (Node, or the native thread), so
 * that the proxy around it compares kinds and the words in the log are made in one place.
 */
import type { NativeEnd } from '../native.js';
import type { ErrorFields } from '../protocol/messages.js';

/** Why the proxy itself turned a login away (the client was told, with `error`). */
export type Refusal = 'admission' | 'catalog_unavailable' | 'unknown_version' | 'retired_version' | 'channel_binding' | 'authentication' | 'upstream_check' | 'startup_parameter' | 'database_disabled';

export type CloseReason =
  // The client's side.
  | { kind: 'client_closed' }
  | { kind: 'client_socket_error'; detail: string }
  | { kind: 'client_terminated'; before: 'startup_packet' | 'login' }
  | { kind: 'cancel_request' }
  | { kind: 'tls_without_alpn' }
  | { kind: 'tls_handshake_timeout' }
  | { kind: 'login_timeout'; error: ErrorFields }
  | { kind: 'client_protocol_violation'; error: ErrorFields }
  // The proxy's own verdicts.
  | { kind: 'refused'; why: Refusal; error: ErrorFields }
  | { kind: 'retired_version' }
  | { kind: 'shutdown'; error: ErrorFields }
  | { kind: 'internal'; error: ErrorFields }
  | { kind: 'native_internal'; detail: string }
  /** Pooled: no server connection for the client (query_wait_timeout, the server unreachable, the pool closed). */
  | { kind: 'pool_error'; error: ErrorFields }
  | { kind: 'idle_transaction_timeout'; error: ErrorFields }
  // The server's side.
  | { kind: 'upstream_unreachable'; error: ErrorFields }
  | { kind: 'server_refused'; code: string }
  | { kind: 'server_socket_error'; detail: string }
  | { kind: 'server_closed' }
  // After login the client is not told (the stream may be mid-message); during login it is.
  | { kind: 'server_protocol_violation'; detail: string; error?: undefined }
  | { kind: 'server_protocol_violation'; detail: string; error: ErrorFields };

/** A reason the client is told about with a FATAL ErrorResponse. */
export type ToldCloseReason = Extract<CloseReason, { error: ErrorFields }>;

/** The words for the `reason` of the session's close log line (operators grep for them). */
export function describeCloseReason(reason: CloseReason): string {
  switch (reason.kind) {
    case 'client_closed':
      return 'client disconnected';
    case 'client_socket_error':
      return `client socket error: ${reason.detail}`;
    case 'client_terminated':
      return reason.before === 'startup_packet' ? 'client terminated before the startup packet' : 'client gave up during authentication';
    case 'cancel_request':
      return 'cancel request';
    case 'tls_without_alpn':
      return 'direct TLS without ALPN "postgresql"';
    case 'tls_handshake_timeout':
      return 'login timeout during TLS handshake';
    case 'retired_version':
      return 'version retired';
    case 'shutdown':
      return 'proxy shutdown';
    case 'native_internal':
      return `internal error in the native forwarder: ${reason.detail}`;
    case 'server_refused':
      return `server refused the session (${reason.code})`;
    case 'server_socket_error':
      return `server connection error: ${reason.detail}`;
    case 'server_closed':
      return 'server closed the connection';
    case 'server_protocol_violation':
      return reason.error ? describeError(reason.error) : 'server protocol error';
    case 'login_timeout':
    case 'client_protocol_violation':
    case 'refused':
    case 'internal':
    case 'upstream_unreachable':
    case 'pool_error':
    case 'idle_transaction_timeout':
      return describeError(reason.error);
  }
}

function describeError(error: ErrorFields): string {
  return `${error.code}: ${error.message}`;
}

/**
 * The native thread's end of a session in the same terms. Undefined when it adds nothing to what
 * the session already knew: a plain hang-up, or the end the proxy itself asked for (terminate).
 */
export function closeReasonOfNativeEnd(end: NativeEnd): CloseReason | undefined {
  switch (end.reason) {
    case 'client_closed':
      return end.detail ? { kind: 'client_socket_error', detail: end.detail } : undefined;
    case 'server_closed':
      if (!end.explained) return { kind: 'server_closed' };
      return end.detail ? { kind: 'server_socket_error', detail: end.detail } : undefined;
    case 'client_protocol':
      return { kind: 'client_protocol_violation', error: { severity: 'FATAL', code: '08P01', message: end.detail } };
    case 'server_protocol':
      return { kind: 'server_protocol_violation', detail: end.detail };
    case 'retired':
      return { kind: 'retired_version' };
    case 'terminated':
      return undefined;
    case 'internal':
      return { kind: 'native_internal', detail: end.detail };
    case 'handed_back':
      // Not an end: a pooled client goes on in Node.
      return undefined;
    case 'pool_error':
      // The thread's detail: SQLSTATE, space, message.
      return { kind: 'pool_error', error: { severity: 'FATAL', code: end.detail.slice(0, 5), message: end.detail.slice(6) } };
  }
}
