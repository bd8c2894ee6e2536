/**
 * Which version a new session gets, decided from its startup parameters and the version list.
 * Pure: the version list comes from the catalog, the answer goes to the session.
 */
import { resolveVersion, searchPathFor, type VersionInfo } from '../state/versions.js';
import type { ErrorFields } from './protocol/messages.js';
import type { StartupParams } from './protocol/messages.js';

export interface RouteRequest {
  /** The real database name (the part before `@`), or the user name when the client sent none. */
  database: string;
  /** What came after `@`, if anything. */
  requestedVersion: string | undefined;
  /** The client sets search_path itself (startup parameter or `options=-c search_path=…`). */
  clientSearchPath: boolean;
}

/** Reads the routing facts out of a StartupMessage. */
export function routeRequest(params: StartupParams): RouteRequest {
  let database: string | undefined;
  let user = '';
  let clientSearchPath = false;
  for (const [name, value] of params) {
    // PostgreSQL matches these three names exactly but setting names case-insensitively.
    if (name === 'database') database = value;
    else if (name === 'user') user = value;
    else if (name === 'options' && /(^|\s)(-c\s*|--)search_path\s*=/i.test(value)) clientSearchPath = true;
    else if (name.toLowerCase() === 'search_path') clientSearchPath = true;
  }
  // An empty database name means "same as the user" to PostgreSQL.
  const raw = database || user;
  // The last '@' splits: a version name never contains one, a database name might. Nothing after
  // it names no version, so a database whose own name ends in '@' is reached as itself
  // (`shop@` gets the default version, `shop@@latest` a named one).
  const at = raw.lastIndexOf('@');
  if (at < 0 || at === raw.length - 1 || database === undefined || database === '') {
    return { database: raw, requestedVersion: undefined, clientSearchPath };
  }
  return { database: raw.slice(0, at), requestedVersion: raw.slice(at + 1), clientSearchPath };
}

export interface RoutingOptions {
  /** `--default-version`: what plain `app` gets. */
  defaultVersion: string;
  /** The migrated schema (`--schema`), last on the search_path. */
  schema: string;
}

export type Route =
  | {
      ok: true;
      /** The version the session counts under, or undefined for a server-default session. */
      version: VersionInfo | undefined;
      /** The search_path startup parameter to add, or undefined to add none. */
      searchPath: string | undefined;
    }
  | { ok: false; error: ErrorFields };

export function chooseRoute(request: RouteRequest, versions: readonly VersionInfo[], options: RoutingOptions): Route {
  const explicit = request.requestedVersion !== undefined;
  const requested = request.requestedVersion ?? options.defaultVersion;
  // Before the first migration there is nothing to route to: "latest" means the tables as they are.
  if (versions.length === 0 && (!explicit || requested === 'latest')) {
    return { ok: true, version: undefined, searchPath: undefined };
  }
  const version = resolveVersion(versions, requested);
  if (!version) return { ok: false, error: unknownVersion(request, requested, versions) };
  return {
    ok: true,
    version,
    searchPath: request.clientSearchPath ? undefined : searchPathFor(version, options.schema),
  };
}

function unknownVersion(request: RouteRequest, requested: string, versions: readonly VersionInfo[]): ErrorFields {
  const names = versions.map((v) => `${v.migration} (${v.versionSchema})`);
  const aliases = versions.length > 1 ? 'latest, previous' : versions.length === 1 ? 'latest' : '';
  return {
    severity: 'FATAL',
    code: '3D000',
    message: `version "${requested}" of database "${request.database}" does not exist`,
    detail: names.length
      ? `Versions that exist, newest first: ${names.join(', ')}; aliases: ${aliases}.`
      : 'No version exists yet: no migration has been started on this database.',
    hint: names.length
      ? `Connect to "${request.database}@latest" or to one of the versions listed.`
      : `Connect to "${request.database}" (no @version) to use the tables as they are.`,
  };
}
