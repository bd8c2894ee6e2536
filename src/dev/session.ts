/**
 * `tandem dev`: everything for local work in one process, nothing to install. An embedded
 * PostgreSQL (its data kept in a folder you choose, or thrown away), the migrations of a folder
 * applied (the last one left active, so two versions are live), the proxy in front, and the
 * connection strings of each version printed. With `watch`, a migration file that appears is
 * started (the active one is completed first).
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdtemp, rm, chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { ENGINE_DEFAULTS, Migrator } from '../engine/migrator.js';
import { readStatusFrom } from '../engine/status.js';
import { loadMigrationFolder, unappliedMigrations } from '../migration/folder.js';
import type { Logger } from '../observe/logger.js';
import { PROXY_DEFAULTS, parseDuration, formatHostPort, type HostPort } from '../proxy/config.js';
import { startProxy, type Proxy } from '../proxy/server.js';
import { MigrationStore } from '../state/migrations.js';
import { initStateSchema } from '../state/schema.js';
import { listVersions } from '../state/versions.js';
import { EmbeddedPostgres } from './embedded.js';
import { freePort } from './ports.js';

export interface DevOptions {
  migrations: string;
  /** Where the cluster lives; undefined: a temporary folder removed on exit. */
  dataDir?: string;
  postgresPort?: number;
  listen: HostPort;
  http?: HostPort;
  watch: boolean;
  logger: Logger;
  print: (line: string) => void;
}

export interface DevSession {
  postgresUrl: string;
  proxy: Proxy;
  /** Stops the proxy, then PostgreSQL; removes a temporary data folder. */
  stop(): Promise<void>;
}

const SCHEMA = 'public';
const STATE_SCHEMA = 'tandem';

export async function startDev(options: DevOptions): Promise<DevSession> {
  const temporary = options.dataDir === undefined;
  const root = options.dataDir ? resolve(options.dataDir) : await mkdtemp(join(tmpdir(), 'tandem-dev-'));
  await mkdir(root, { recursive: true });
  // As root the server runs as `postgres`, which must reach the folder.
  await chmod(root, 0o755).catch(() => {});
  const server = new EmbeddedPostgres({
    dataDir: join(root, 'pgdata'),
    port: options.postgresPort ?? (await freePort()),
    onLog: (line) => options.logger.debug({ postgres: line }, 'postgres'),
  });
  if (!(await server.initialized())) {
    options.print(`creating a PostgreSQL cluster in ${join(root, 'pgdata')}`);
    await server.initialize();
  }
  await server.start();
  const postgresUrl = server.url();
  options.print(`PostgreSQL is running: ${postgresUrl}`);

  let proxy: Proxy | undefined;
  let watcher: FSWatcher | undefined;
  const stop = async () => {
    watcher?.close();
    await proxy?.shutdown(1000).catch(() => {});
    await proxy?.closed.catch(() => {});
    await server.stop();
    if (temporary) await rm(root, { recursive: true, force: true });
  };
  try {
    await applyFolder(postgresUrl, options);
    proxy = await startProxy({
      listen: options.listen,
      http: options.http,
      postgresUrl,
      defaultVersion: 'latest',
      maxClientConn: PROXY_DEFAULTS.maxClientConn,
      shutdownGraceMs: 1000,
      clientLoginTimeoutMs: parseDuration(PROXY_DEFAULTS.clientLoginTimeout, 'login timeout'),
      serverConnectTimeoutMs: parseDuration(PROXY_DEFAULTS.serverConnectTimeout, 'connect timeout'),
      heartbeatIntervalMs: 2000,
      heartbeatExpireMs: 600_000,
      versionCacheTtlMs: parseDuration(PROXY_DEFAULTS.versionCacheTtl, 'cache ttl'),
      schema: SCHEMA,
      stateSchema: STATE_SCHEMA,
      logger: options.logger,
      rollout: () => readStatusFrom(postgresUrl, STATE_SCHEMA, SCHEMA),
    });
    await printConnections(postgresUrl, options);
    if (options.watch) watcher = watchFolder(postgresUrl, options);
  } catch (error) {
    await stop();
    throw error;
  }
  return { postgresUrl, proxy, stop };
}

async function withMigrator<T>(postgresUrl: string, options: DevOptions, body: (migrator: Migrator, db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: postgresUrl, application_name: 'tandem' });
  await db.connect();
  try {
    const migrator = new Migrator(db, { ...ENGINE_DEFAULTS, schema: SCHEMA, stateSchema: STATE_SCHEMA, logger: options.logger });
    return await body(migrator, db);
  } finally {
    await db.end().catch(() => {});
  }
}

/** Applies every migration of the folder not applied yet; all but the last are completed. */
async function applyFolder(postgresUrl: string, options: DevOptions): Promise<void> {
  const folder = await loadMigrationFolder(options.migrations);
  await withMigrator(postgresUrl, options, async (migrator, db) => {
    await initStateSchema(db, STATE_SCHEMA);
    const applied = await new MigrationStore(db, STATE_SCHEMA, SCHEMA).applied();
    const pending = unappliedMigrations(folder, applied);
    // Everything left active (several, when stacked), oldest first, before anything new starts.
    const active = pending.length ? applied.filter((record) => record.status !== 'complete') : [];
    for (const record of active) {
      await migrator.complete({ force: true });
      options.print(`completed ${record.name}`);
    }
    for (const [i, loaded] of pending.entries()) {
      const last = i === pending.length - 1;
      const { record } = await migrator.start(loaded, { complete: !last, completeOptions: { force: true } });
      options.print(`${last ? 'started' : 'applied'} ${record.name} (version schema ${record.versionSchema})`);
    }
    if (!pending.length) options.print(`${folder.length} migration${folder.length === 1 ? '' : 's'} already applied`);
  });
}

async function printConnections(postgresUrl: string, options: DevOptions): Promise<void> {
  const db = new pg.Client({ connectionString: postgresUrl });
  await db.connect();
  const versions = await listVersions(db, STATE_SCHEMA, SCHEMA).finally(() => db.end());
  const address = formatHostPort(options.listen);
  options.print('');
  options.print(`proxy listening on ${address}; connect each app version to its own database name:`);
  for (const [i, v] of versions.entries()) {
    const role = i === 0 ? 'latest' : i === 1 ? 'previous' : 'older';
    options.print(`  ${role.padEnd(8)} postgres://postgres@${address}/postgres@${v.migration}   (${v.versionSchema})`);
  }
  if (!versions.length) options.print(`  postgres://postgres@${address}/postgres   (no migrations yet: the server's defaults)`);
  options.print(`  e.g.  psql "postgres://postgres@${address}/postgres@latest"`);
  if (options.http) options.print(`status page: http://${formatHostPort(options.http)}/  (JSON: /status, Prometheus: /metrics)`);
  options.print(options.watch ? `watching ${options.migrations} for new migrations; Ctrl-C stops everything` : 'Ctrl-C stops everything');
}

/** A new file in the folder: complete the active migration, start the new one, print the versions. */
function watchFolder(postgresUrl: string, options: DevOptions): FSWatcher {
  let queue = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  return watch(options.migrations, () => {
    // Editors write files in several steps: act once things settle.
    clearTimeout(timer);
    timer = setTimeout(() => {
      queue = queue
        .then(async () => {
          await applyFolder(postgresUrl, options);
          await printConnections(postgresUrl, options);
        })
        .catch((error: unknown) => options.print(`could not apply the folder: ${(error as Error).message}`));
    }, 300);
  });
}
