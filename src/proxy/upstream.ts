/**
 * Where the proxy's sessions go and how a connection there is opened: TCP (or a Unix socket), then
 * TLS as the connection string's sslmode asks, with libpq's meaning for each mode.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { encodeCancelRequest, encodeSSLRequest } from './protocol/messages.js';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

export interface UpstreamTarget {
  /** A host name or address, or a directory holding PostgreSQL's Unix socket. */
  host: string;
  port: number;
  sslmode: SslMode;
  /** PEM contents, read once at start-up. */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  connectTimeoutMs: number;
}

/** Reads the server address and TLS settings from a connection string (user and password are not used here). */
export function upstreamTarget(url: string, connectTimeoutMs: number): UpstreamTarget {
  const parsed = new URL(url);
  const query = parsed.searchParams;
  const host = decodeURIComponent(query.get('host') ?? parsed.hostname) || 'localhost';
  const port = Number(query.get('port') ?? (parsed.port || 5432));
  const mode = (query.get('sslmode') ?? 'prefer') as SslMode;
  if (!SSL_MODES.includes(mode)) throw new Error(`unknown sslmode "${mode}" in the connection string (expected ${SSL_MODES.join(', ')})`);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`invalid port in the connection string: ${port}`);
  const file = (name: string) => {
    const path = query.get(name);
    return path ? readFileSync(path) : undefined;
  };
  // As in libpq, a root certificate turns "require" into "verify-ca".
  const ca = file('sslrootcert');
  return {
    host: host.replace(/^\[(.*)\]$/, '$1'),
    port,
    sslmode: mode === 'require' && ca ? 'verify-ca' : mode,
    ca,
    cert: file('sslcert'),
    key: file('sslkey'),
    connectTimeoutMs,
  };
}

export function describeTarget(target: UpstreamTarget): string {
  return target.host.startsWith('/') ? `${target.host}/.s.PGSQL.${target.port}` : `${target.host}:${target.port}`;
}

/** A TCP or Unix-socket connection to the server, with Nagle off (the protocol is request/response). */
export function dial(target: UpstreamTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = target.host.startsWith('/')
      ? net.connect({ path: `${target.host}/.s.PGSQL.${target.port}` })
      : net.connect({ host: target.host, port: target.port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timed out after ${target.connectTimeoutMs} ms connecting to ${describeTarget(target)}`));
    }, target.connectTimeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
    const onError = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    socket.once('error', onError);
  });
}

/** Opens a session connection, negotiating TLS per sslmode. The caller sends the StartupMessage. */
export async function openUpstream(target: UpstreamTarget): Promise<net.Socket> {
  const socket = await dial(target);
  if (target.sslmode === 'disable' || target.sslmode === 'allow') return socket;
  try {
    socket.write(encodeSSLRequest());
    const answer = await readOneByte(socket, target);
    if (answer === 0x4e /* 'N' */) {
      if (target.sslmode === 'prefer') return socket;
      throw new Error(`the server at ${describeTarget(target)} does not accept TLS, but the connection string says sslmode=${target.sslmode}`);
    }
    if (answer !== 0x53 /* 'S' */) throw new Error(`unexpected answer 0x${answer.toString(16)} to SSLRequest from ${describeTarget(target)}`);
    return await startTls(socket, target);
  } catch (error) {
    socket.destroy();
    throw error;
  }
}

function readOneByte(socket: net.Socket, target: UpstreamTarget): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`timed out waiting for the TLS answer of ${describeTarget(target)}`)), target.connectTimeoutMs);
    const onData = (chunk: Buffer) => {
      // The server sends exactly one byte and then waits for us; more would be an injection attempt.
      if (chunk.length !== 1) return done(new Error(`unexpected data after the TLS answer from ${describeTarget(target)}`));
      done(undefined, chunk[0]);
    };
    const onError = (error: Error) => done(error);
    const onClose = () => done(new Error(`${describeTarget(target)} closed the connection during TLS negotiation`));
    function done(error: Error | undefined, value?: number) {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      socket.pause();
      if (error) reject(error);
      else resolve(value!);
    }
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

function startTls(socket: net.Socket, target: UpstreamTarget): Promise<tls.TLSSocket> {
  const verify = target.sslmode === 'verify-ca' || target.sslmode === 'verify-full';
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      ca: target.ca,
      cert: target.cert,
      key: target.key,
      rejectUnauthorized: verify,
      servername: net.isIP(target.host) ? undefined : target.host,
      // verify-ca checks the chain but, unlike verify-full, not the name.
      checkServerIdentity: target.sslmode === 'verify-full' ? tls.checkServerIdentity : () => undefined,
      ALPNProtocols: ['postgresql'],
    });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(new Error(`timed out in the TLS handshake with ${describeTarget(target)}`));
    }, target.connectTimeoutMs);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      secure.removeListener('error', onError);
      resolve(secure);
    });
    const onError = (error: Error) => {
      clearTimeout(timer);
      reject(new Error(`TLS with ${describeTarget(target)} failed: ${error.message}`));
    };
    secure.once('error', onError);
  });
}

/**
 * Passes a CancelRequest on. Over plain TCP even when sessions use TLS: PostgreSQL accepts cancel
 * requests on any connection and pg_hba.conf does not apply to them.
 */
export async function sendCancel(target: UpstreamTarget, key: Buffer): Promise<void> {
  const socket = await dial(target);
  socket.on('error', () => {});
  // The server closes the connection once it has read the request and signalled the backend;
  // nothing comes back. Resolves at that close (or after the connect timeout), so that the caller
  // can hold the client's cancel connection open until then, as the server itself would.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve();
    }, target.connectTimeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.end(encodeCancelRequest(key));
  });
}
