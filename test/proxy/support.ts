/**
 * Helpers for the proxy tests: a proxy in this process on a free loopback port, versions simulated
 * the way `tandem start` will leave them (version schemas of views plus rows in the state schema),
 * and a throwaway TLS certificate.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach } from 'vitest';
import pg from 'pg';
import { initStateSchema } from '../../src/state/schema.js';
import { createLogger, silentLogger } from '../../src/observe/logger.js';
import { startProxy, type Proxy } from '../../src/proxy/server.js';
import type { ProxyOptions } from '../../src/proxy/config.js';

export interface TestProxy extends Proxy {
  /** A connection URL through the proxy to `database[@version]` on behalf of `user`. */
  url(database: string, user?: string, password?: string): string;
  readonly port: number;
}

const running = new Set<Proxy>();

/** Proxies started by a test are shut down after it, even when it fails. */
afterEach(async () => {
  await Promise.all([...running].map((proxy) => proxy.shutdown(0)));
  running.clear();
});

export async function startTestProxy(postgresUrl: string, options: Partial<ProxyOptions> = {}): Promise<TestProxy> {
  const proxy = await startProxy({
    listen: { host: '127.0.0.1', port: 0 },
    postgresUrl,
    defaultVersion: 'latest',
    maxClientConn: 200,
    shutdownGraceMs: 0,
    clientLoginTimeoutMs: 10_000,
    serverConnectTimeoutMs: 5_000,
    // Tests call heartbeat() themselves; the loop must not race them.
    heartbeatIntervalMs: 3_600_000,
    heartbeatExpireMs: 3_600_000,
    versionCacheTtlMs: 60_000,
    schema: 'public',
    stateSchema: 'tandem',
    logger: silentLogger(),
    ...options,
  });
  running.add(proxy);
  const port = proxy.address.port;
  return Object.assign(proxy, {
    port,
    url(database: string, user = 'postgres', password?: string) {
      const auth = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
      return `postgres://${auth}@127.0.0.1:${port}/${database}`;
    },
  });
}

export function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

export interface SimulatedVersion {
  migration: string;
  /** SQL that creates the version schema's views; `$S` stands for the version schema's name. */
  views: string;
  status?: 'active' | 'complete';
}

/** The version schema tandem would create for `migration` on schema public. */
export function versionSchemaOf(migration: string): string {
  return `public_${migration}`;
}

/** Creates the state schema, then each version's schema and its migrations row, oldest first. */
export async function simulateVersions(url: string, versions: SimulatedVersion[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await initStateSchema(client, 'tandem');
    for (const version of versions) await addVersion(client, version);
  } finally {
    await client.end();
  }
}

export async function addVersion(client: pg.Client, version: SimulatedVersion): Promise<void> {
  const schema = versionSchemaOf(version.migration);
  await client.query(`CREATE SCHEMA "${schema}"`);
  await client.query(version.views.replaceAll('$S', `"${schema}"`));
  await client.query(
    `INSERT INTO tandem.migrations (schema_name, name, version_schema, digest, migration, status, started_by)
     VALUES ('public', $1, $2, 'digest', '{}', $3, 'test')`,
    [version.migration, schema, version.status ?? 'complete'],
  );
}

/**
 * The shapes used by routing tests: `users` has columns (id, email) in 01_init and
 * (id, mail, full_name) in 02_rename.
 */
export const TWO_SHAPES: SimulatedVersion[] = [
  { migration: '01_init', views: `CREATE VIEW $S.users AS SELECT id, email FROM public.users` },
  { migration: '02_rename', views: `CREATE VIEW $S.users AS SELECT id, email AS mail, full_name FROM public.users`, status: 'active' },
];

export async function createUsersTable(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`CREATE TABLE public.users (id int PRIMARY KEY, email text, full_name text)`);
  await client.query(`INSERT INTO public.users VALUES (1, 'a@example.com', 'Ada'), (2, 'b@example.com', 'Bob')`);
  await client.end();
}

let certificate: { cert: string; key: string } | undefined;

/** A self-signed certificate for 127.0.0.1/localhost, made once per test file with openssl. */
export function selfSignedCertificate(): { cert: string; key: string } {
  if (certificate) return certificate;
  const dir = mkdtempSync(join(tmpdir(), 'tandem-tls-'));
  const cert = join(dir, 'proxy.crt');
  const key = join(dir, 'proxy.key');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  certificate = { cert, key };
  return certificate;
}

/** A raw TCP connection to the proxy, for tests that speak bytes. */
export function rawConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Everything a socket receives until the other side closes it. */
export function readUntilClose(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** A pg client through the proxy, with errors on idle connections swallowed (tests check them explicitly). */
export async function connectThrough(url: string, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, ...extra });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** The proxy's log lines as objects, for tests that check what it logs. */
export function capturedLogger(level: 'info' | 'debug' = 'info') {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ destination, format: 'json', level }), lines };
}

/** The ErrorResponses in a byte stream from the proxy, as field maps (e.g. `C` = SQLSTATE, `M` = message). */
export function errorsIn(bytes: Buffer): Array<Record<string, string>> {
  const errors: Array<Record<string, string>> = [];
  let offset = 0;
  // A lone 'N' or 'S' answers an SSLRequest; typed messages follow.
  while (offset + 5 <= bytes.length) {
    const type = bytes[offset]!;
    const length = bytes.readInt32BE(offset + 1);
    if (length < 4) break;
    if (type === 0x45) {
      const fields: Record<string, string> = {};
      for (const part of bytes.subarray(offset + 5, offset + 1 + length).toString('utf8').split('\0')) {
        if (part) fields[part[0]!] = part.slice(1);
      }
      errors.push(fields);
    }
    offset += 1 + length;
  }
  return errors;
}

/**
 * A raw protocol session through the proxy (trust auth): sends a StartupMessage and resolves once
 * ReadyForQuery arrives, so a test can then write arbitrary frames.
 */
export async function rawSession(port: number, database: string, user = 'postgres', extra: Array<[string, string]> = []): Promise<net.Socket> {
  const socket = await rawConnect(port);
  const { encodeStartupMessage, PROTOCOL_3_0 } = await import('../../src/proxy/protocol/messages.js');
  socket.write(encodeStartupMessage(PROTOCOL_3_0, [['user', user], ['database', database], ...extra]));
  await new Promise<void>((resolve, reject) => {
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      // ReadyForQuery is 'Z', length 5, status: the last 6 bytes of the startup answer.
      if (seen.length >= 6 && seen[seen.length - 6] === 0x5a) {
        socket.removeListener('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`session closed during startup: ${JSON.stringify(errorsIn(seen))}`)));
  });
  return socket;
}
