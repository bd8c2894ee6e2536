/**
 * Looking a user's secret up in the server (PgBouncer's auth_query), for users not in an auth file.
 *
 * Safety, after PgBouncer's CVE-2025-12819 (an unqualified auth_query, run with a search_path the
 * client chose, let a client resolve its names to objects of its own): the lookup runs on a dedicated
 * connection the proxy opens with a fixed `search_path=pg_catalog, pg_temp` and no parameter from any
 * client, the default query names everything with its schema, and the user name only ever travels as
 * a bound parameter.
 *
 * Nothing is cached: a changed password or a dropped role counts from the next login, as with
 * PostgreSQL itself, and one lookup costs one round trip on the open connection.
 */
import type { UpstreamTarget } from '../upstream.js';
import { parseSecret, type Secret } from './secret.js';
import { ServerSession, type ServerLogin } from './server-session.js';

/** PgBouncer's default auth_query, schema-qualified. */
export const DEFAULT_AUTH_QUERY = 'SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1';

/** The search_path of the lookup connection: system catalogs first, temporary objects never before them. */
export const AUTH_QUERY_SEARCH_PATH = 'pg_catalog, pg_temp';

export interface AuthQueryOptions {
  target: UpstreamTarget;
  /** Who runs the query (it must be allowed to read pg_shadow, or whatever the query reads). */
  login: Omit<ServerLogin, 'params'>;
  /** Takes the user name as $1 and returns (user name, secret) rows; the default is DEFAULT_AUTH_QUERY. */
  query?: string;
}

/** The query's answer could not be used: its shape, not a user's absence. Names no secret. */
export class AuthQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthQueryError';
  }
}

export class AuthQuery {
  private session: Promise<ServerSession> | undefined;
  private readonly query: string;

  constructor(private readonly options: AuthQueryOptions) {
    this.query = options.query ?? DEFAULT_AUTH_QUERY;
  }

  /**
   * The user's secret, or undefined when the user does not exist or has no password (NULL): both
   * must be refused exactly like a wrong password, so that clients cannot probe for user names.
   */
  async lookUp(user: string): Promise<Secret | undefined> {
    let session = await this.connection();
    if (!session.usable) {
      // Died while idle (a server restart, an idle timeout): reopen rather than fail this login.
      this.session = undefined;
      session = await this.connection();
    }
    let rows;
    try {
      rows = await session.query(this.query, [user]);
    } finally {
      // A broken connection is replaced at the next lookup; a query error leaves it usable.
      if (!session.usable) this.session = undefined;
    }
    if (rows.length === 0) return undefined;
    if (rows.length > 1) throw new AuthQueryError(`the auth query returned ${rows.length} rows for user "${user}"; it must return at most one`);
    const row = rows[0]!;
    if (row.length !== 2) throw new AuthQueryError(`the auth query must return two columns (user name, secret), not ${row.length}`);
    const secret = row[1];
    if (secret === null || secret === undefined) return undefined;
    try {
      return parseSecret(secret);
    } catch (error) {
      throw new AuthQueryError(`the auth query returned an unreadable secret for user "${user}": ${(error as Error).message}`);
    }
  }

  close(): void {
    const session = this.session;
    this.session = undefined;
    void session?.then((open) => open.close(), () => {});
  }

  private connection(): Promise<ServerSession> {
    if (!this.session) {
      const opening = ServerSession.open(this.options.target, { ...this.options.login, params: [['search_path', AUTH_QUERY_SEARCH_PATH]] });
      this.session = opening;
      opening.catch(() => {
        if (this.session === opening) this.session = undefined;
      });
    }
    return this.session;
  }
}
