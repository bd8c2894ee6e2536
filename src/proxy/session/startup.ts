/**
 * The client's side of a session before authentication: what its first packets ask for (SSL or
 * GSS encryption, a cancel, a login) and, for a login, which database and version it goes to.
 * No sockets here: the session coordinator acts on what these functions decide.
 */
import type { VersionInfo } from '../../state/versions.js';
import type { Catalogs } from '../catalog.js';
import type { ProxyMetrics } from '../metrics.js';
import { ProtocolError, type FrameReader } from '../protocol/frames.js';
import { parseStartupPacket, type ErrorFields, type StartupParams } from '../protocol/messages.js';
import { chooseRoute, type RouteRequest, type RoutingOptions } from '../routing.js';
import { describeTarget, type UpstreamTarget } from '../upstream.js';
import type { ToldCloseReason } from './close-reason.js';

/** Client messages before authentication completes are small (passwords, SASL); PostgreSQL caps them alike. */
export const MAX_AUTH_MESSAGE_LENGTH = 65_536;

export type StartupRequest =
  /** Terminate where a startup packet belongs: a client that gave up before logging in. */
  | { kind: 'terminate' }
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; key: Buffer }
  /** `body`: the startup packet after its length word, as sent (native-login.ts learns logins by it). */
  | { kind: 'login'; protocol: number; params: StartupParams; body: Buffer };

/** The next request in the client's startup bytes, or undefined until all of it has arrived. */
export function readStartupRequest(reader: FrameReader): StartupRequest | undefined {
  const terminate = reader.startsWithTerminate();
  if (terminate) return { kind: 'terminate' };
  if (terminate === undefined && reader.pending > 0) return undefined;
  const body = reader.nextUntyped();
  if (!body) return undefined;
  const packet = parseStartupPacket(body);
  switch (packet.kind) {
    case 'ssl':
      // Bytes sent before the handshake could be injected by a man in the middle (CVE-2021-23214).
      if (reader.pending > 0) throw new ProtocolError('received unencrypted data after SSL request');
      return packet;
    case 'gssenc':
    case 'cancel':
      return packet;
    case 'startup':
      return { kind: 'login', protocol: packet.protocol, params: packet.params, body };
  }
}

/** Where a login goes, as far as the proxy decides it before the server has a say. */
export interface LoginRoute {
  /** The live versions when the session was routed, to tell which one a reported search_path starts with. */
  readonly versions: readonly VersionInfo[];
  /** The version the database name (or the default) chose; undefined on the server's defaults. */
  readonly version: VersionInfo | undefined;
  /** The client set its own search_path: the server's report of it may move the session to another version. */
  readonly clientSearchPath: boolean;
  /** The startup parameters the server is sent (the bare database name, the version's search_path). */
  readonly upstreamParams: StartupParams;
  /** The client named a version that does not exist: told once the server has authenticated it. */
  readonly refusalAfterLogin: ErrorFields | undefined;
}

export interface RouteDeps {
  readonly catalogs: Catalogs;
  readonly routing: RoutingOptions;
  readonly upstream: UpstreamTarget;
  readonly metrics: ProxyMetrics;
}

export async function routeLogin(request: RouteRequest, params: StartupParams, deps: RouteDeps): Promise<{ ok: true; route: LoginRoute } | { ok: false; reason: ToldCloseReason }> {
  let versions: readonly VersionInfo[];
  try {
    versions = await deps.catalogs.versions(request.database);
  } catch (error) {
    deps.metrics.reject('catalog_unavailable');
    return { ok: false, reason: { kind: 'refused', why: 'catalog_unavailable', error: catalogError(error, request.database, deps.upstream) } };
  }
  let route = chooseRoute(request, versions, deps.routing);
  if (!route.ok && request.requestedVersion !== undefined) {
    // `tandem start` may have made the version a moment ago, its notification still on its way:
    // the list is read again before the client is told the version does not exist.
    try {
      versions = await deps.catalogs.reread(request.database);
      route = chooseRoute(request, versions, deps.routing);
    } catch {
      // The refusal stands, from the list the proxy had.
    }
  }
  const upstreamParams: StartupParams = params.map(([name, value]) => [name, name === 'database' ? request.database : value]);
  if (route.ok && route.searchPath) upstreamParams.push(['search_path', route.searchPath]);
  return {
    ok: true,
    route: {
      versions,
      version: route.ok ? route.version : undefined,
      clientSearchPath: request.clientSearchPath !== undefined,
      upstreamParams,
      // The version list is for clients the server lets in: the login goes to the server as for a
      // known version (with no version search_path) and the refusal follows AuthenticationOk.
      refusalAfterLogin: route.ok ? undefined : route.error,
    },
  };
}

function catalogError(error: unknown, database: string, target: UpstreamTarget): ErrorFields {
  const code = (error as { code?: unknown }).code;
  // The server's own verdict (no such database, no permission) reads best unchanged.
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    // `app@` with an empty version (an unset variable in `app@${VERSION}`) is the database "app@".
    const hint = code === '3D000' && database.endsWith('@') ? `A name ending in "@" is taken as the whole database name; to choose a version, name it after the "@" (e.g. "${database}latest").` : undefined;
    return { severity: 'FATAL', code, message: (error as Error).message, ...(hint ? { hint } : {}) };
  }
  return {
    severity: 'FATAL',
    code: '08006',
    message: `the tandem proxy cannot read the versions of database "${database}" at ${describeTarget(target)}: ${(error as Error).message}`,
    hint: 'The server may be down or restarting; try again shortly.',
  };
}
