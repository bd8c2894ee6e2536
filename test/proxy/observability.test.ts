/** Heartbeats in the state schema, readLiveClients across proxies, and the HTTP endpoints. */
import { describe, expect, it } from 'vitest';
import { readLiveClients } from '../../src/state/heartbeats.js';
import { usePostgres } from '../support/harness.js';
import { TWO_SHAPES, connectThrough, createUsersTable, databaseOf, simulateVersions, startTestProxy } from './support.js';

describe('heartbeats and live clients', () => {
  const pg = usePostgres();

  it('writes one row per proxy; readLiveClients sums fresh proxies and ignores stale ones', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const database = databaseOf(pg.url);
    const a = await startTestProxy(pg.url, { proxyId: 'proxy-a' });
    const b = await startTestProxy(pg.url, { proxyId: 'proxy-b', heartbeatExpireMs: 60_000 });
    const clients = [
      await connectThrough(a.url(`${database}@01_init`)),
      await connectThrough(a.url(`${database}@01_init`)),
      await connectThrough(b.url(`${database}@latest`)),
    ];
    await clients[0]!.query('SELECT 1');
    await Promise.all([a.heartbeat(), b.heartbeat()]);
    const db = await pg.client();

    const live = await readLiveClients(db, 'tandem', 'public');
    expect(live.proxies.map((p) => p.proxyId)).toEqual(['proxy-a', 'proxy-b']);
    expect(live.unreported).toEqual([]);
    expect(live.versions.public_01_init).toMatchObject({ clients: 2, lastQueryAt: expect.any(Date) });
    expect(live.versions.public_01_init!.proxies.map((p) => [p.proxyId, p.clients])).toEqual([['proxy-a', 2], ['proxy-b', 0]]);
    expect(live.versions.public_02_rename).toMatchObject({ clients: 1 });

    // proxy-a falls silent (as if killed): its clients no longer count, its row is reported stale.
    await db.query(`UPDATE tandem.proxies SET heartbeat_at = now() - interval '1 minute' WHERE proxy_id = 'proxy-a'`);
    const stale = await readLiveClients(db, 'tandem', 'public', { staleAfterMs: 15_000 });
    expect(stale.staleProxies.map((p) => p.proxyId)).toEqual(['proxy-a']);
    expect(stale.versions.public_01_init!.clients).toBe(0);

    // Much older rows are deleted by any live proxy's heartbeat.
    await db.query(`UPDATE tandem.proxies SET heartbeat_at = now() - interval '2 hours' WHERE proxy_id = 'proxy-a'`);
    await b.heartbeat();
    expect((await db.query(`SELECT proxy_id FROM tandem.proxies ORDER BY 1`)).rows).toEqual([{ proxy_id: 'proxy-b' }]);

    // A clean shutdown removes the proxy's own row.
    await Promise.all(clients.map((c) => c.end()));
    await b.shutdown(0);
    expect((await db.query(`SELECT count(*)::int AS n FROM tandem.proxies`)).rows[0]!.n).toBe(0);
    const none = await readLiveClients(db, 'tandem', 'public');
    expect(none.unreported).toEqual(['public_02_rename', 'public_01_init']);
  });

  it('serves /healthz, /readyz, /metrics and /status', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const database = databaseOf(pg.url);
    const proxy = await startTestProxy(pg.url, { http: { host: '127.0.0.1', port: 0 } });
    const base = `http://127.0.0.1:${proxy.httpAddress!.port}`;
    const client = await connectThrough(proxy.url(`${database}@01_init`));
    await client.query('SELECT 1');

    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, versions: 2 });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain(`tandem_proxy_client_connections{database="${database}",version="public_01_init"} 1`);
    expect(metrics).toMatch(new RegExp(`tandem_proxy_queries_total\\{database="${database}",version="public_01_init"\\} [1-9]`));
    expect(metrics).toMatch(/tandem_proxy_client_sent_bytes_total [1-9]/);
    expect(metrics).toContain('tandem_proxy_upstream_connect_seconds_bucket');
    // The older version was superseded when the newer one started; the latest has no such series.
    const started = (await pg.query(`SELECT extract(epoch FROM started_at)::float8 AS at FROM tandem.migrations WHERE name = '02_rename'`)).rows[0].at as number;
    const superseded = new RegExp(`tandem_proxy_version_superseded_timestamp_seconds\\{database="${database}",version="public_01_init"\\} ([\\d.]+)`).exec(metrics);
    expect(Number(superseded?.[1])).toBeCloseTo(started, 2);
    expect(metrics).not.toMatch(/tandem_proxy_version_superseded_timestamp_seconds\{[^}]*version="public_02_rename"/);
    expect(metrics).toContain('tandem_proxy_ready 1');
    const status = (await (await fetch(`${base}/status`)).json()) as { clients: number; databases: Record<string, { versions: string[] }> };
    expect(status.clients).toBe(1);
    expect(status.databases[database]!.versions).toEqual(['public_02_rename', 'public_01_init']);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
    await client.end();

    if (pg.server.kind === 'embedded') {
      await pg.server.pause();
      try {
        const down = await fetch(`${base}/readyz`);
        expect(down.status).toBe(503);
      } finally {
        await pg.server.resume();
      }
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
    }
  });
});
