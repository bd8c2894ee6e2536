import type { Queryable } from '../db/connection.js';
import { quoteIdent } from '../core/quote.js';
import { stateSchemaExists, type MigrationStatus } from './schema.js';

/** A version schema that exists and can serve clients. */
export interface VersionInfo {
  /** The migration that created it, e.g. `02_rename_email`. */
  migration: string;
  /** The schema holding its views, e.g. `public_02_rename_email`. */
  versionSchema: string;
  status: MigrationStatus;
  startedAt: Date;
  completedAt: Date | null;
}

/** Live versions of `schema`, newest first: index 0 is "latest", index 1 "previous". */
export async function listVersions(db: Queryable, stateSchema: string, schema: string): Promise<VersionInfo[]> {
  if (!(await stateSchemaExists(db, stateSchema))) return [];
  const { rows } = await db.query<{
    migration: string;
    version_schema: string;
    status: MigrationStatus;
    started_at: Date;
    completed_at: Date | null;
  }>(
    `SELECT migration, version_schema, status, started_at, completed_at
       FROM ${quoteIdent(stateSchema)}.versions
      WHERE schema_name = $1
      ORDER BY id DESC`,
    [schema],
  );
  return rows.map((row) => ({
    migration: row.migration,
    versionSchema: row.version_schema,
    status: row.status,
    startedAt: row.started_at,
    completedAt: row.completed_at,
  }));
}

/**
 * Finds the version a client asked for: `latest`, `previous`, a migration name, or a version
 * schema name. Returns undefined when nothing matches (the caller lists what exists).
 */
export function resolveVersion(versions: readonly VersionInfo[], requested: string): VersionInfo | undefined {
  if (requested === 'latest') return versions[0];
  if (requested === 'previous') return versions[1];
  return versions.find((v) => v.migration === requested) ?? versions.find((v) => v.versionSchema === requested);
}

/**
 * The search_path a client of `version` gets: its version schema first, then the migrated schema,
 * so functions, types and tables tandem does not manage still resolve.
 */
export function searchPathFor(version: VersionInfo, schema: string): string {
  return `${quoteIdent(version.versionSchema)}, ${quoteIdent(schema)}`;
}
