import { afterAll, beforeAll, beforeEach } from 'vitest';
import pg from 'pg';
import { startTestPostgres, type StartOptions, type TestPostgres } from './postgres.js';

export interface PostgresFixture {
  /** The server of this test file. */
  readonly server: TestPostgres;
  /** The fresh database of the current test (created in beforeEach). */
  readonly url: string;
  /** A connected client on the current test's database; closed after the file. */
  client(): Promise<pg.Client>;
  /** Runs one query on the current test's database. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test rows are checked by assertions, not types
  query<R extends pg.QueryResultRow = any>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * One real PostgreSQL for this test file and a fresh database for every test in it.
 * Call at the top of a describe block or file.
 */
export function usePostgres(options: StartOptions = {}): PostgresFixture {
  let server: TestPostgres | undefined;
  let url = '';
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    server = await startTestPostgres(options);
  }, 120_000);

  beforeEach(async () => {
    url = await server!.createDatabase();
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await server?.stop();
  }, 60_000);

  const fixture: PostgresFixture = {
    get server() {
      if (!server) throw new Error('usePostgres: the server is not started yet (use it inside a test)');
      return server;
    },
    get url() {
      return url;
    },
    async client() {
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
      return client;
    },
    async query(sql, params) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        return await client.query(sql, params);
      } finally {
        await client.end();
      }
    },
  };
  return fixture;
}
