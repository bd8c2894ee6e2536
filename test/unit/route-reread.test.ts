/**
 * A login that names a version the proxy's cached list lacks: the list is read again before the
 * client is refused, because `tandem start` may have made the version a moment before its
 * notification reached the proxy (seen as a rare refusal of the newest app version right after
 * start, in the stacked end-to-end test). The catalogs are a stand-in here: what is tested is the
 * decision, the database reads are the catalog's own tests.
 */
import { describe, expect, it } from 'vitest';
import type { Catalogs } from '../../src/proxy/catalog.js';
import type { ProxyMetrics } from '../../src/proxy/metrics.js';
import { routeLogin } from '../../src/proxy/session/startup.js';
import type { UpstreamTarget } from '../../src/proxy/upstream.js';
import type { VersionInfo } from '../../src/state/versions.js';

const version = (migration: string): VersionInfo => ({ migration, versionSchema: `public_${migration}`, status: 'active', startedAt: new Date(), completedAt: null });
const before = [version('02_price')];
const after = [version('03_total'), version('02_price')];

function catalogs(reread: () => Promise<readonly VersionInfo[]>): { catalogs: Catalogs; rereads: () => number } {
  let count = 0;
  const stand = {
    versions: async () => before,
    reread: async () => {
      count++;
      return reread();
    },
  };
  return { catalogs: stand as unknown as Catalogs, rereads: () => count };
}

const deps = (catalogs: Catalogs) => ({
  catalogs,
  routing: { defaultVersion: 'latest', schema: 'public' },
  upstream: {} as UpstreamTarget,
  metrics: { reject: () => {} } as unknown as ProxyMetrics,
});

const login = (requestedVersion: string | undefined) =>
  [{ database: 'app', requestedVersion, clientSearchPath: undefined }, [['user', 'u'], ['database', requestedVersion ? `app@${requestedVersion}` : 'app']] as [string, string][]] as const;

describe('a login naming a version the cached list lacks', () => {
  it('reads the list again and routes to the version a migration just made', async () => {
    const { catalogs: stand, rereads } = catalogs(async () => after);
    const routed = await routeLogin(...login('03_total'), deps(stand));
    expect(routed.ok && routed.route.refusalAfterLogin).toBeUndefined();
    expect(routed.ok && routed.route.version?.migration).toBe('03_total');
    expect(routed.ok && routed.route.upstreamParams.find(([name]) => name === 'search_path')?.[1]).toMatch(/^"?public_03_total"?,/);
    expect(rereads()).toBe(1);
  });

  it('still refuses a version that does not exist after the second read, or when it fails, and does not read again for a known one', async () => {
    const missing = catalogs(async () => after);
    const refused = await routeLogin(...login('04_nothing'), deps(missing.catalogs));
    expect(refused.ok && refused.route.refusalAfterLogin).toMatchObject({ code: '3D000', message: 'version "04_nothing" of database "app" does not exist' });
    const failing = catalogs(async () => {
      throw new Error('connection lost');
    });
    const stillRefused = await routeLogin(...login('03_total'), deps(failing.catalogs));
    expect(stillRefused.ok && stillRefused.route.refusalAfterLogin).toMatchObject({ code: '3D000' });
    const known = catalogs(async () => after);
    await routeLogin(...login('02_price'), deps(known.catalogs));
    await routeLogin(...login(undefined), deps(known.catalogs));
    expect(known.rereads()).toBe(0);
  });
});
