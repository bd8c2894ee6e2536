/**
 * The client's connection: its socket, which becomes a TLS socket when the client asks for
 * encryption (an SSLRequest, or direct TLS from the first byte), and the ways to end it.
 */
import net from 'node:net';
import type tls from 'node:tls';
import { encodeErrorResponse, type ErrorFields } from '../protocol/messages.js';
import { splitHostPort } from '../config.js';
import { ALPN_POSTGRESQL, TLS_HANDSHAKE_BYTE, acceptDirectTls, acceptTls } from '../tls.js';

/** How long a client that was sent a FATAL error may take to hang up before the socket is destroyed. */
const FATAL_LINGER_MS = 2_000;

const SSL_YES = Buffer.from('S');
/**
 * The socket of a session the native thread logged in (native-login.ts): it has none in Node until
 * the thread hands it back. Never connected, so what the session does to it on ending does nothing.
 */
const NO_SOCKET = new net.Socket().destroy();
const SSL_NO = Buffer.from('N');

/** Ends the client's side after what is queued (a last ErrorResponse), and destroys it if it does not hang up. */
export function endClient(client: net.Socket | tls.TLSSocket, last?: Buffer): void {
  if (last) client.end(last);
  else client.end();
  setTimeout(() => client.destroy(), FATAL_LINGER_MS).unref();
}

export interface ClientListeners {
  data(chunk: Buffer): void;
  error(error: Error): void;
  close(): void;
  /** A direct-TLS client did not name the PostgreSQL protocol: the connection is not for us. */
  notPostgresql(): void;
}

export class ClientConnection {
  readonly address: string;
  /** The proxy's end of the connection (SHOW CLIENTS), kept: a natively forwarded client's socket is closed in Node. */
  readonly localAddress: string = '';
  readonly localPort: number = 0;
  private current: net.Socket | tls.TLSSocket;
  private encryption: 'none' | 'handshake' | 'established' = 'none';
  private firstChunk = true;

  constructor(
    /** Undefined: the native thread logged the client in and holds its socket (`address` says whose it is). */
    socket: net.Socket | undefined,
    /** The proxy's certificate, when it accepts TLS from clients. */
    private readonly secureContext: tls.SecureContext | undefined,
    private readonly listeners: ClientListeners,
    address?: string,
    /** The proxy's end, "host:port", for a client the thread logged in ('' or undefined: unknown). */
    localAddress?: string,
  ) {
    if (!socket) {
      this.current = NO_SOCKET;
      this.address = address ?? 'unknown';
      if (localAddress) ({ host: this.localAddress, port: this.localPort } = splitHostPort(localAddress));
      this.firstChunk = false;
      return;
    }
    this.current = socket;
    this.address = `${socket.remoteAddress ?? 'unix'}:${socket.remotePort ?? 0}`;
    this.localAddress = socket.localAddress ?? '';
    this.localPort = socket.localPort ?? 0;
    socket.setNoDelay(true);
    this.attach(socket);
  }

  /** The TLS protocol and cipher (`TLSv1.3/TLS_AES_256_GCM_SHA384`), '' in clear. */
  get tlsDescription(): string {
    if (!this.encrypted) return '';
    const socket = this.current as tls.TLSSocket;
    return `${socket.getProtocol() ?? ''}/${socket.getCipher()?.name ?? ''}`;
  }

  /** The socket the client's bytes come through (the TLS one once encryption has begun). */
  get socket(): net.Socket | tls.TLSSocket {
    return this.current;
  }

  /** TLS from the client ends at the proxy. */
  get encrypted(): boolean {
    return this.encryption === 'established';
  }

  /** Mid-handshake: nothing can be sent that the client could read. */
  get handshaking(): boolean {
    return this.encryption === 'handshake';
  }

  /** Whether the client's first bytes begin a direct TLS handshake, which then takes them. */
  startsDirectTls(chunk: Buffer): boolean {
    if (!this.firstChunk) return false;
    this.firstChunk = false;
    if (chunk[0] !== TLS_HANDSHAKE_BYTE || !this.secureContext || this.encryption !== 'none') return false;
    this.startTls(acceptDirectTls(this.current as net.Socket, chunk, this.secureContext), true);
    return true;
  }

  /** Answers an SSLRequest: yes and the handshake when the proxy has a certificate, else no. */
  answerSslRequest(): 'tls' | 'plain' {
    if (this.secureContext && this.encryption === 'none') {
      this.current.write(SSL_YES);
      this.startTls(acceptTls(this.current as net.Socket, this.secureContext), false);
      return 'tls';
    }
    this.current.write(SSL_NO);
    return 'plain';
  }

  /** The proxy has no GSSAPI: the client goes on unencrypted or gives up, as it chooses. */
  refuseGssEncryption(): void {
    this.current.write(SSL_NO);
  }

  /** The session is logged in: the forwarding reads the socket from now on. */
  stopReading(): void {
    this.current.removeListener('data', this.listeners.data);
  }

  /** Sends a FATAL error and ends the connection, where the client can still read one (not gone, not mid-handshake). */
  fail(error: ErrorFields): void {
    if (!this.current.destroyed && !this.handshaking) endClient(this.current, encodeErrorResponse(error));
  }

  /**
   * The native forwarder gave a pooled client back on a socket of its own (over the descriptor it
   * had): its failures and its end are the session's again; the forwarding reads it.
   */
  adopt(socket: net.Socket): void {
    this.current = socket;
    socket.setNoDelay(true);
    socket.on('error', this.listeners.error);
    socket.on('close', this.listeners.close);
  }

  private attach(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', this.listeners.data);
    socket.on('error', this.listeners.error);
    socket.on('close', this.listeners.close);
  }

  private startTls(secure: tls.TLSSocket, direct: boolean): void {
    const raw = this.current;
    raw.removeListener('data', this.listeners.data);
    raw.removeListener('error', this.listeners.error);
    raw.removeListener('close', this.listeners.close);
    // The TLS socket reports errors of the connection beneath it; this keeps a stray one from throwing.
    raw.on('error', () => {});
    this.current = secure;
    this.encryption = 'handshake';
    this.attach(secure);
    secure.once('secure', () => {
      // A direct-TLS client must name the protocol, as PostgreSQL 17 requires, so that a TLS
      // connection meant for another service is not taken for a PostgreSQL session.
      if (direct && secure.alpnProtocol !== ALPN_POSTGRESQL) {
        this.listeners.notPostgresql();
        return;
      }
      this.encryption = 'established';
    });
  }
}
