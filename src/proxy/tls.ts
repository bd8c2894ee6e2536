/**
 * TLS towards clients: the proxy terminates it with --tls-cert/--tls-key, after an SSLRequest or,
 * as PostgreSQL 17 allows (`sslnegotiation=direct`), straight away with ALPN "postgresql".
 */
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';

export const ALPN_POSTGRESQL = 'postgresql';

/** The first byte of a TLS handshake record: how a direct-TLS client announces itself. */
export const TLS_HANDSHAKE_BYTE = 0x16;

export function loadServerTls(certFile: string, keyFile: string): tls.SecureContext {
  try {
    return tls.createSecureContext({ cert: readFileSync(certFile), key: readFileSync(keyFile) });
  } catch (error) {
    throw new Error(`cannot load the TLS certificate "${certFile}" and key "${keyFile}": ${(error as Error).message}`);
  }
}

/** Starts the server side of TLS on a socket whose next bytes are the client's handshake. */
export function acceptTls(socket: net.Socket, context: tls.SecureContext): tls.TLSSocket {
  return new tls.TLSSocket(socket, { isServer: true, secureContext: context, ALPNProtocols: [ALPN_POSTGRESQL] });
}

/**
 * Direct TLS: the handshake's first bytes were already read while looking for a startup packet, so
 * they are replayed in front of the socket's further data. This costs a JavaScript stream between
 * TLS and the socket, which only direct-TLS sessions pay.
 */
export function acceptDirectTls(socket: net.Socket, alreadyRead: Buffer, context: tls.SecureContext): tls.TLSSocket {
  const replay = new ReplayStream(socket, alreadyRead);
  return new tls.TLSSocket(replay, { isServer: true, secureContext: context, ALPNProtocols: [ALPN_POSTGRESQL] });
}

class ReplayStream extends Duplex {
  constructor(
    private readonly socket: net.Socket,
    first: Buffer,
  ) {
    super();
    this.push(first);
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (error) => this.destroy(error));
    socket.on('close', () => this.destroy());
    socket.resume();
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }
}
