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
  /**
   * The search_path the client sets itself (startup parameter, or `-c search_path=…` /
   * `--search_path=…` in `options`), as PostgreSQL will apply it; undefined when it sets none.
   */
  clientSearchPath: string | undefined;
}

/** Reads the routing facts out of a StartupMessage. */
export function routeRequest(params: StartupParams): RouteRequest {
  let database: string | undefined;
  let user = '';
  let fromOptions: string | undefined;
  let fromParameter: string | undefined;
  for (const [name, value] of params) {
    // PostgreSQL matches these three names exactly but setting names case-insensitively.
    if (name === 'database') database = value;
    else if (name === 'user') user = value;
    else if (name === 'options') fromOptions = settingInOptions(value, 'search_path') ?? fromOptions;
    else if (name.toLowerCase() === 'search_path') fromParameter = value;
  }
  // The server applies `options` first and the other startup parameters after, so those win.
  const clientSearchPath = fromParameter ?? fromOptions;
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

/**
 * The last value `options` gives a setting, read as PostgreSQL does (see `readOptions`), the name
 * case-insensitive.
 */
export function settingInOptions(options: string, setting: string): string | undefined {
  let found: string | undefined;
  for (const [name, value] of readOptions(options).settings) if (name === setting) found = value;
  return found;
}

/**
 * The settings an `options` startup parameter gives, in order, read as PostgreSQL does: words split
 * at unescaped whitespace (a backslash escapes the next character), `-c name=value`,
 * `-cname=value` or `--name=value`, with dashes in the name read as underscores and the name
 * lower-cased. `other`: words that are not such a setting (the server's other command-line switches).
 */
export function readOptions(options: string): { settings: Array<[string, string]>; other: string[] } {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < options.length; i++) {
    const char = options[i]!;
    if (/\s/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (char === '\\' && i + 1 < options.length) {
      word = (word ?? '') + options[++i];
    } else {
      word = (word ?? '') + char;
    }
  }
  if (word !== undefined) words.push(word);
  const settings: Array<[string, string]> = [];
  const other: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const current = words[i]!;
    let assignment: string | undefined;
    if (current === '-c') assignment = words[++i];
    else if (current.startsWith('--')) assignment = current.slice(2);
    else if (current.startsWith('-c')) assignment = current.slice(2);
    const eq = assignment?.indexOf('=') ?? -1;
    if (assignment === undefined || eq < 0) {
      other.push(assignment ?? current);
      continue;
    }
    settings.push([assignment.slice(0, eq).replaceAll('-', '_').toLowerCase(), assignment.slice(eq + 1)]);
  }
  return { settings, other };
}

/**
 * The schema names of a search_path value, as PostgreSQL splits it: comma-separated, double quotes
 * keep case and commas (`""` is a quote), unquoted names fold to lower case.
 */
export function searchPathSchemas(path: string): string[] {
  const names: string[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < path.length && /\s/.test(path[i]!)) i++;
  };
  for (;;) {
    skipSpace();
    if (i >= path.length) break;
    let name = '';
    if (path[i] === '"') {
      i++;
      for (;;) {
        if (i >= path.length) return names; // unterminated quote: PostgreSQL rejects the value
        if (path[i] === '"') {
          if (path[i + 1] === '"') {
            name += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        name += path[i++];
      }
    } else {
      const start = i;
      while (i < path.length && path[i] !== ',' && !/\s/.test(path[i]!)) i++;
      name = path.slice(start, i).toLowerCase();
    }
    names.push(name);
    skipSpace();
    if (path[i] === ',') i++;
    else break;
  }
  return names;
}

/**
 * The live version a search_path starts with: its first schema, past `$user` and the system
 * schemas (which hold no tables of the app), when that is a version schema; else undefined.
 */
export function versionOfSearchPath(path: string, versions: readonly VersionInfo[]): VersionInfo | undefined {
  const first = searchPathSchemas(path).find((name) => name !== '$user' && name !== 'pg_catalog' && !name.startsWith('pg_temp'));
  return first === undefined ? undefined : versions.find((v) => v.versionSchema === first);
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
  if (request.clientSearchPath !== undefined) {
    // The client's own path is left alone, and the session counts under the version that path
    // really starts with (so `complete` cannot retire it under the client); a path that starts
    // with no live version counts under the version named in the database name.
    return { ok: true, version: versionOfSearchPath(request.clientSearchPath, versions) ?? version, searchPath: undefined };
  }
  return { ok: true, version, searchPath: searchPathFor(version, options.schema) };
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
