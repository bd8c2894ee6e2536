/** The status page at / of the proxy's --http: served HTML without a browser, then in a real headless Chromium. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readStatusFrom } from '../../src/engine/status.js';
import { chromiumMissing, dumpDom, pngPixels, screenshot } from '../support/chromium.js';
import { usePostgres } from '../support/harness.js';
import { ok, start } from '../support/migrations.js';
import { connectThrough, databaseOf, startTestProxy } from './support.js';

const missing = chromiumMissing();
if (missing) console.log(`skipping the browser cases of the status page: ${missing}`);

const createUsers = [{ create_table: { name: 'users', columns: [{ name: 'id', type: 'int', pk: true }, { name: 'email', type: 'text', nullable: true }] } }];
const checkEmail = [{ alter_column: { table: 'users', column: 'email', check: { name: 'email_has_at', constraint: "email LIKE '%@%'" }, up: "CASE WHEN email LIKE '%@%' THEN email ELSE email || '@unknown' END", down: 'email' } }];

describe('status page', () => {
  const pg = usePostgres();

  /** Two versions with a migration active between them, two clients on the old one and one on the new. */
  async function rollout() {
    ok(await start(pg.url, '01_users', createUsers, ['--complete']));
    await pg.query(`INSERT INTO users SELECT g, 'user' || g FROM generate_series(1, 50) g`);
    ok(await start(pg.url, '02_check', checkEmail));
    const proxy = await startTestProxy(pg.url, { http: { host: '127.0.0.1', port: 0 }, rollout: () => readStatusFrom(pg.url, 'tandem', 'public') });
    const database = databaseOf(pg.url);
    const clients = [
      await connectThrough(proxy.url(`${database}@01_users`)),
      await connectThrough(proxy.url(`${database}@01_users`)),
      await connectThrough(proxy.url(`${database}@latest`)),
    ];
    for (const client of clients) await client.query('SELECT count(*) FROM users');
    await proxy.heartbeat();
    const base = `http://127.0.0.1:${proxy.httpAddress!.port}`;
    return { proxy, base, clients };
  }

  it('is served as HTML that reads without JavaScript, from the same facts as /status', async () => {
    const { base, clients } = await rollout();
    const response = await fetch(`${base}/`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await response.text();
    expect(html).toMatch(/<tr data-version="public_01_users">.*<td class="num" data-clients>2<\/td>/s);
    expect(html).toMatch(/<tr data-version="public_02_check">.*<td class="num" data-clients>1<\/td>/s);
    expect(html).toContain('<h2>Migration <code>02_check</code></h2>');
    expect(html).toMatch(/<li class="done">✓ add constraint email_has_at NOT VALID<\/li>/);
    expect(html).toMatch(/<tr data-table="users">.*50\/50/s);
    expect(html).toContain('Complete would wait now: ');
    expect(html).toContain('<noscript><meta http-equiv="refresh"');

    const status = (await (await fetch(`${base}/status`)).json()) as { rollout: { active: { name: string; phaseSteps: string[] }; versions: { versionSchema: string; clients: number }[] } };
    expect(status.rollout.active.name).toBe('02_check');
    expect(status.rollout.versions.map((v) => [v.versionSchema, v.clients])).toEqual([['public_02_check', 1], ['public_01_users', 2]]);
    await Promise.all(clients.map((c) => c.end()));
  });

  it('says so when the state cannot be read, and still shows what the proxy sees', async () => {
    const proxy = await startTestProxy(pg.url, { http: { host: '127.0.0.1', port: 0 }, rollout: () => Promise.reject(new Error('permission denied for schema <tandem>')) });
    const html = await (await fetch(`http://127.0.0.1:${proxy.httpAddress!.port}/`)).text();
    expect(html).toContain('Cannot read the state schema: permission denied for schema &#60;tandem&#62;');
    expect(html).toContain('<h2>Clients of this proxy</h2>');
  });

  it.skipIf(missing)('renders in a headless Chromium, refreshes itself, and draws a page', async () => {
    const { proxy, base, clients } = await rollout();
    // Ten seconds of virtual time: the script has fetched and swapped the page in at least once.
    const dom = await dumpDom(`${base}/`, 10_000);
    expect(dom).toContain('<h2>Migration <code>02_check</code></h2>');
    // Client counts are the HTML case's: a slow browser start may outlast the heartbeats' freshness.
    expect(dom).toContain('<tr data-version="public_01_users">');
    expect(dom).toMatch(/<main id="page" data-refreshes="[1-9]">/);

    await proxy.heartbeat();
    const png = await screenshot(`${base}/`);
    // For a person to look at: TANDEM_SCREENSHOT_DIR=/tmp npx vitest run test/proxy/status-page.test.ts
    if (process.env.TANDEM_SCREENSHOT_DIR) writeFileSync(join(process.env.TANDEM_SCREENSHOT_DIR, 'status-page.png'), png);
    const { width, height, data } = pngPixels(png);
    expect([width, height]).toEqual([1200, 900]);
    // A blank page decodes to a handful of byte values; text, tables and progress bars to many.
    expect(new Set(data).size).toBeGreaterThan(32);
    await Promise.all(clients.map((c) => c.end()));
  }, 180_000);
});
