/**
 * The proxy's cached view of each database's versions. One connection per database both LISTENs on
 * the versions channel and runs the refresh queries, so a burst of new clients costs no queries: the
 * list is reloaded when a migration changes state (NOTIFY) or when it is older than the TTL (the
 * fallback for a lost notification or a dropped listener connection).
 */
import type pg from 'pg';
import { connect } from '../db/connection.js';
import { quoteIdent } from '../core/quote.js';
import type { Logger } from '../observe/logger.js';
import { VERSIONS_CHANNEL } from '../state/schema.js';
import { listVersions, type VersionInfo } from '../state/versions.js';

/** Why a version a session uses has gone away, in words fit for the client. */
export interface RetiredVersion {
  database: string;
  versionSchema: string;
  message: string;
}

export interface CatalogOptions {
  /** The proxy's own connection string; the database part is replaced per catalog. */
  postgresUrl: string;
  stateSchema: string;
  schema: string;
  /** How long a version list is trusted without a notification. */
  ttlMs: number;
  logger: Logger;
  /** Called when a refresh finds that versions disappeared. */
  onRetired: (retired: RetiredVersion[]) => void;
  /** Called after every load, before onRetired, with the list now in use (native logins forget what it changes). */
  onLoaded?: (database: string, versions: readonly VersionInfo[]) => void;
}

/** A connection string for another database on the same server, with the same credentials. */
export function urlForDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  // node-postgres reads the path with decodeURI, which leaves URI delimiters encoded: those that a
  // path may hold are written as they are (a database named "shop@" must not become "shop%40").
  parsed.pathname = `/${encodeURIComponent(database).replace(/%(40|3A|3B|26|3D|2B|24|2C)/g, (escaped) => decodeURIComponent(escaped))}`;
  return parsed.toString();
}

export class VersionCatalog {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private list: readonly VersionInfo[] | undefined;
  private loadedAt = 0;
  private refreshing: Promise<readonly VersionInfo[]> | undefined;
  /** Bumped by every notification, so a refresh that started before it does not count as fresh. */
  private generation = 0;
  private closed = false;
  /** Whether a connection ever succeeded: tells a database that exists from a typo. */
  everConnected = false;

  constructor(
    readonly database: string,
    private readonly options: CatalogOptions,
  ) {}

  /** The versions, newest first, from cache when it is fresh. Throws when the database cannot be read. */
  async versions(): Promise<readonly VersionInfo[]> {
    if (this.list && this.client && Date.now() - this.loadedAt < this.options.ttlMs) return this.list;
    return this.refresh();
  }

  /** The last list loaded, without touching the database (for heartbeats and /status). */
  cached(): readonly VersionInfo[] {
    return this.list ?? [];
  }

  /** Reloads the list now; concurrent callers share one query. */
  refresh(): Promise<readonly VersionInfo[]> {
    this.refreshing ??= this.load().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** This catalog's connection, opened if needed: heartbeats and readiness use it rather than opening another. */
  connection(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    if (this.closed) return Promise.reject(new Error('the version catalog is closed'));
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private async load(): Promise<readonly VersionInfo[]> {
    const generation = this.generation;
    const client = await this.connection();
    const next = await listVersions(client, this.options.stateSchema, this.options.schema);
    const previous = this.list ?? [];
    const gone = previous.filter((old) => !next.some((v) => v.versionSchema === old.versionSchema));
    const retired = gone.length > 0 ? await this.explainRetired(client, gone) : [];
    // The new list and the retirement of the old versions' sessions take effect together: no one
    // sees a version gone from the list while its sessions may still run.
    this.list = next;
    // A notification that arrived during the query may describe a change the query missed.
    this.loadedAt = generation === this.generation ? Date.now() : 0;
    this.options.onLoaded?.(this.database, next);
    if (retired.length > 0) this.options.onRetired(retired);
    return next;
  }

  private async open(): Promise<pg.Client> {
    const client = await connect(urlForDatabase(this.options.postgresUrl, this.database), { applicationName: 'tandem proxy' });
    const forget = (why: string) => {
      if (this.client !== client) return;
      this.client = undefined;
      this.loadedAt = 0;
      this.options.logger.warn({ database: this.database, reason: why }, 'version catalog connection lost; will reconnect on next use');
    };
    client.on('error', (error: Error) => forget(error.message));
    client.on('end', () => forget('connection closed'));
    client.on('notification', () => {
      this.generation++;
      this.loadedAt = 0;
      // Refresh at once rather than at the next connection, so retired versions are noticed.
      this.refresh().catch((error: Error) =>
        this.options.logger.warn({ database: this.database, err: error.message }, 'version refresh after notification failed'),
      );
    });
    await client.query(`LISTEN ${quoteIdent(VERSIONS_CHANNEL)}`);
    if (this.closed) {
      await client.end().catch(() => {});
      throw new Error('the version catalog is closed');
    }
    this.client = client;
    this.everConnected = true;
    return client;
  }

  private async explainRetired(client: pg.Client, gone: readonly VersionInfo[]): Promise<RetiredVersion[]> {
    const s = quoteIdent(this.options.stateSchema);
    const retired: RetiredVersion[] = [];
    for (const version of gone) {
      const { rows } = await client
        .query<{ status: string; retired_by: string | null }>(
          `SELECT m.status,
                  (SELECT n.name FROM ${s}.migrations n
                    WHERE n.schema_name = m.schema_name AND n.id > m.id AND n.status IN ('completing', 'complete')
                    ORDER BY n.id LIMIT 1) AS retired_by
             FROM ${s}.migrations m
            WHERE m.schema_name = $1 AND m.version_schema = $2
            ORDER BY m.id DESC LIMIT 1`,
          [this.options.schema, version.versionSchema],
        )
        .catch(() => ({ rows: [] as Array<{ status: string; retired_by: string | null }> }));
      const row = rows[0];
      const why =
        row?.status === 'rolled_back'
          ? `was rolled back`
          : row?.retired_by
            ? `was retired by migration "${row.retired_by}"`
            : 'no longer exists';
      retired.push({
        database: this.database,
        versionSchema: version.versionSchema,
        message: `version "${version.versionSchema}" ${why}; reconnect to ${this.database}@latest`,
      });
    }
    return retired;
  }
}

/** One catalog per database the proxy has served, created on first use. */
export class Catalogs {
  private readonly byDatabase = new Map<string, VersionCatalog>();

  constructor(private readonly options: CatalogOptions) {}

  get(database: string): VersionCatalog {
    let catalog = this.byDatabase.get(database);
    if (!catalog) {
      catalog = new VersionCatalog(database, this.options);
      this.byDatabase.set(database, catalog);
    }
    return catalog;
  }

  /**
   * The versions of `database`. A database whose catalog never managed to connect (it does not
   * exist, or the proxy's user may not enter it) is forgotten again, so junk names cannot pile up.
   */
  async versions(database: string): Promise<readonly VersionInfo[]> {
    const catalog = this.get(database);
    try {
      return await catalog.versions();
    } catch (error) {
      if (!catalog.everConnected) await this.drop(database);
      throw error;
    }
  }

  /**
   * The versions of `database` read again now (a refresh already under way is shared): for a login
   * that names a version the cached list lacks, which a migration started a moment ago may have
   * made before its notification arrived.
   */
  async reread(database: string): Promise<readonly VersionInfo[]> {
    return this.get(database).refresh();
  }

  all(): VersionCatalog[] {
    return [...this.byDatabase.values()];
  }

  /** Forgets a database (its catalog could not even connect, e.g. it does not exist). */
  async drop(database: string): Promise<void> {
    const catalog = this.byDatabase.get(database);
    this.byDatabase.delete(database);
    await catalog?.close();
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((c) => c.close()));
    this.byDatabase.clear();
  }
}
