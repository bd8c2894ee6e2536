import pg from 'pg';
import { isDatabaseError, TandemError, UsageError } from '../errors/index.js';

/**
 * Where to find PostgreSQL: `--postgres-url`, else DATABASE_URL, else the libpq PG* variables
 * (node-postgres reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and PGSSLMODE itself).
 * A URL that is not one is bad usage, reported with the value (its password hidden): node-postgres
 * would read "not a url" as a host name and fail later with an error that does not mention it.
 */
export function resolvePostgresUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (flag !== undefined) return checkPostgresUrl(flag, '--postgres-url');
  if (env.DATABASE_URL) return checkPostgresUrl(env.DATABASE_URL, 'DATABASE_URL');
  // pgroll's variable, so that scripts written for pgroll find the same server.
  if (env.PGROLL_PG_URL) return checkPostgresUrl(env.PGROLL_PG_URL, 'PGROLL_PG_URL');
  return undefined;
}

const URL_SCHEMES = ['postgres:', 'postgresql:'];
const URL_SHAPE = 'postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require…] (postgresql:// works too)';

/** The URL unchanged when node-postgres can use it; else a usage error naming `source` and the value. */
export function checkPostgresUrl(value: string, source: '--postgres-url' | 'DATABASE_URL' | 'PGROLL_PG_URL' | '--replica-url'): string {
  const problem = urlProblem(value);
  if (!problem) return value;
  const fallback =
    source === '--postgres-url'
      ? 'leave it out to use DATABASE_URL or the PG* variables'
      : source === '--replica-url'
        ? 'give the replica as a connection URL'
        : `fix ${source}, or unset it to use the PG* variables`;
  throw new UsageError(`${source} ${JSON.stringify(redactPassword(value))} is not a PostgreSQL connection URL: ${problem}`, `expected ${URL_SHAPE}; ${fallback}`);
}

function urlProblem(value: string): string | undefined {
  if (value.trim() === '') return 'it is empty';
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(value)?.[1];
  if (!scheme || !value.startsWith(`${scheme}://`)) return 'it does not start with postgres://';
  if (!URL_SCHEMES.includes(`${scheme.toLowerCase()}:`)) return `its scheme is "${scheme}:", not postgres: or postgresql:`;
  try {
    new URL(value);
  } catch {
    return 'it cannot be read as a URL (a character in the user name or password that needs percent-encoding, or a port that is not a number?)';
  }
  return undefined;
}

/** The value with any password replaced by ***, parsable or not, so an error can show it. */
export function redactPassword(value: string): string {
  try {
    const url = new URL(value);
    if (url.password) {
      url.password = '***';
      return url.toString();
    }
  } catch {
    // Not a URL: fall through to the textual forms.
  }
  const userinfo = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value) ? /^([^/]*\/\/[^:@/\s]*):.*@/ : /^([^:@/\s]*):.*@/;
  return value.replace(userinfo, '$1:***@').replace(/(password\s*=\s*)\S+/gi, '$1***');
}

export interface ConnectOptions {
  /** Shown in pg_stat_activity, so an operator can tell tandem's sessions from the app's. */
  applicationName?: string;
  /** SET ROLE right after connecting (--role): what the session creates is owned by that role. */
  role?: string;
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
    throw new TandemError({ kind: 'connect_failed', address: where, reason: (error as Error).message }, { cause: error });
  }
  if (options.role) {
    try {
      // SET ROLE, with the name as a parameter rather than spliced into the statement.
      await client.query(`SELECT pg_catalog.set_config('role', $1, false)`, [options.role]);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
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
