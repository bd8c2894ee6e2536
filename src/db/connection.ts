import pg from 'pg';
import { isDatabaseError, TandemError } from '../errors.js';

/**
 * Where to find PostgreSQL: `--postgres-url`, else DATABASE_URL, else the libpq PG* variables
 * (node-postgres reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and PGSSLMODE itself).
 */
export function resolvePostgresUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (flag) return flag;
  if (env.DATABASE_URL) return env.DATABASE_URL;
  return undefined;
}

export interface ConnectOptions {
  /** Shown in pg_stat_activity, so an operator can tell tandem's sessions from the app's. */
  applicationName?: string;
}

export function clientConfig(url: string | undefined, options: ConnectOptions = {}): pg.ClientConfig {
  return {
    ...(url ? { connectionString: url } : {}),
    application_name: options.applicationName ?? 'tandem',
    // A server that vanished without closing the connection (a host gone, a cut network) is noticed.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
}

/** The one way tandem opens a session: a pg.Client, connected, with errors surfaced to the caller. */
export async function connect(url: string | undefined, options: ConnectOptions = {}): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(url, options));
  // An idle client whose server goes away emits 'error'; without a listener that would crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    if (isDatabaseError(error)) throw error;
    const where = `${client.host ?? 'localhost'}:${client.port ?? 5432}`;
    throw new TandemError('connect_failed', `could not connect to PostgreSQL at ${where}: ${(error as Error).message}`, {
      hint: 'check --postgres-url, DATABASE_URL or the PG* variables, and that the server is up',
      cause: error,
    });
  }
  return client;
}

/** Runs `body` with a fresh connection and always closes it. */
export async function withConnection<T>(
  url: string | undefined,
  body: (client: pg.Client) => Promise<T>,
  options: ConnectOptions = {},
): Promise<T> {
  const client = await connect(url, options);
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export type Queryable = Pick<pg.Client, 'query'>;
