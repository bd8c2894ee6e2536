/**
 * Authentication is the server's; the proxy relays it. trust, cleartext password, md5 and SCRAM
 * users, over plain TCP and TLS to the proxy, and with TLS between proxy and server too.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { TWO_SHAPES, connectThrough, createUsersTable, databaseOf, selfSignedCertificate, simulateVersions, startTestProxy } from './support.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse';
const USERS = { trust: 'postgres', password: 'tandem_clear', md5: 'tandem_md5', scram: 'tandem_scram' } as const;

describe('authentication through the proxy', () => {
  const pg = usePostgres();

  beforeAll(async () => {
    const server = pg.server;
    await server.admin(`SET password_encryption = 'md5'; CREATE ROLE tandem_md5 LOGIN SUPERUSER PASSWORD '${PASSWORD}'`);
    await server.admin(`SET password_encryption = 'scram-sha-256';
      CREATE ROLE tandem_scram LOGIN SUPERUSER PASSWORD '${PASSWORD}';
      CREATE ROLE tandem_clear LOGIN SUPERUSER PASSWORD '${PASSWORD}'`);
    await server.addHbaRules([
      'host all tandem_md5 127.0.0.1/32 md5',
      'host all tandem_scram 127.0.0.1/32 scram-sha-256',
      'host all tandem_clear 127.0.0.1/32 password',
    ]);
  });

  for (const tls of [false, true]) {
    it(`relays trust, cleartext, md5 and SCRAM (${tls ? 'TLS' : 'plain'} to the proxy)`, async () => {
      const certificate = selfSignedCertificate();
      const proxy = await startTestProxy(pg.url, tls ? { tlsCert: certificate.cert, tlsKey: certificate.key } : {});
      const ssl = tls ? { rejectUnauthorized: false } : false;
      for (const [method, user] of Object.entries(USERS)) {
        const client = await connectThrough(proxy.url(databaseOf(pg.url), user, method === 'trust' ? undefined : PASSWORD), { ssl });
        const { rows } = await client.query('SELECT current_user AS who');
        expect(rows[0]!.who, method).toBe(user);
        await client.end();
      }
      // libpq: over TLS it announces that it could bind a channel ("y"); the upstream is plain, so that is fine.
      const { stdout } = await run('psql', ['-X', '-A', '-t', '-c', 'SELECT current_user', '-d',
        `host=127.0.0.1 port=${proxy.port} user=tandem_scram dbname=${databaseOf(pg.url)} sslmode=${tls ? 'require' : 'disable'}`], { env: { ...process.env, PGPASSWORD: PASSWORD } });
      expect(stdout.trim()).toBe('tandem_scram');
    });
  }

  it('passes the server\'s refusal of a wrong password through and counts it', async () => {
    const proxy = await startTestProxy(pg.url);
    for (const user of [USERS.md5, USERS.scram]) {
      await expect(connectThrough(proxy.url(databaseOf(pg.url), user, 'wrong'))).rejects.toMatchObject({ code: '28P01' });
    }
    const metrics = (await proxy.metrics.text()).body;
    expect(metrics).toMatch(/^tandem_proxy_auth_failures_total 2$/m);
  });

  it('tells only an authenticated client that its version does not exist, and which ones do', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const proxy = await startTestProxy(pg.url);
    const database = databaseOf(pg.url);
    for (const user of [USERS.md5, USERS.scram, USERS.password]) {
      // A wrong password gets the server's refusal and nothing about versions.
      const refused = await connectThrough(proxy.url(`${database}@03_nope`, user, 'wrong')).catch((error: unknown) => error);
      expect(refused, user).toMatchObject({ code: '28P01' });
      expect(JSON.stringify(refused)).not.toMatch(/01_init|02_rename|version/);
      // The right one: the server logs the client in (AuthenticationOk), then the proxy refuses it with the list.
      const unknown = await connectThrough(proxy.url(`${database}@03_nope`, user, PASSWORD)).catch((error: unknown) => error);
      expect(unknown, user).toMatchObject({ code: '3D000', message: `version "03_nope" of database "${database}" does not exist` });
      expect((unknown as { detail: string }).detail).toContain('02_rename (public_02_rename), 01_init (public_01_init)');
    }
    expect((await proxy.metrics.text()).body).toMatch(/tandem_proxy_rejected_connections_total\{reason="unknown_version"\} 3/);
  });

  it('explains that channel binding cannot work through a TLS-terminating proxy', async () => {
    const certificate = selfSignedCertificate();
    const proxy = await startTestProxy(pg.url, { tlsCert: certificate.cert, tlsKey: certificate.key });
    const failure = await run('psql', ['-X', '-c', 'SELECT 1', '-d',
      `host=127.0.0.1 port=${proxy.port} user=tandem_scram dbname=${databaseOf(pg.url)} sslmode=require channel_binding=require`], { env: { ...process.env, PGPASSWORD: PASSWORD } }).catch((error: { stderr: string }) => error);
    expect((failure as { stderr: string }).stderr).toMatch(/channel binding/);
  });

  it('reaches the server over TLS (sslmode in the URL) and refuses SCRAM downgrades with a clear message', async () => {
    const server = pg.server;
    if (server.kind !== 'embedded' || !server.dataDir) return;
    // The server's key must belong to the user the server runs as, readable by it alone.
    const certificate = selfSignedCertificate();
    const serverCert = join(server.dataDir, 'server.crt');
    const serverKey = join(server.dataDir, 'server.key');
    copyFileSync(certificate.cert, serverCert);
    copyFileSync(certificate.key, serverKey);
    chmodSync(serverKey, 0o600);
    if (process.getuid?.() === 0) await run('chown', ['postgres', serverCert, serverKey]);
    await server.configure({ ssl: 'on', ssl_cert_file: serverCert, ssl_key_file: serverKey });
    try {
      const url = `${pg.url}?sslmode=require&uselibpqcompat=true`;
      const proxy = await startTestProxy(url, { tlsCert: certificate.cert, tlsKey: certificate.key });
      const database = databaseOf(pg.url);
      // Plain to the proxy: the client cannot bind, says so ("n"), and the server accepts.
      const plain = await connectThrough(proxy.url(database, USERS.scram, PASSWORD));
      expect((await plain.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]!.ssl).toBe(true);
      await plain.end();
      const psql = (extra: string) =>
        run('psql', ['-X', '-A', '-t', '-c', 'SELECT current_user', '-d', `host=127.0.0.1 port=${proxy.port} user=tandem_scram dbname=${database} sslmode=require ${extra}`], {
          env: { ...process.env, PGPASSWORD: PASSWORD },
        });
      const refused = await psql('').catch((error: { stderr: string }) => error);
      expect((refused as { stderr: string }).stderr).toMatch(/needs channel binding disabled/);
      expect((await psql('channel_binding=disable')).stdout.trim()).toBe('tandem_scram');

      // node-postgres with enableChannelBinding announces "y" even over plain TCP; with the server
      // reached over TLS (it offers -PLUS) that cannot pass, on either client side, and the error
      // says why for the side it is on.
      const withBinding = (tls: boolean, target = proxy) =>
        connectThrough(target.url(database, USERS.scram, PASSWORD), { enableChannelBinding: true, ssl: tls ? { rejectUnauthorized: false } : false } as Partial<import('pg').ClientConfig>);
      const plainRefusal = await withBinding(false).catch((error: unknown) => error);
      expect(plainRefusal).toMatchObject({ code: '28000', message: 'SCRAM login through the tandem proxy needs channel binding disabled in this client' });
      expect((plainRefusal as { detail: string }).detail).toMatch(/without TLS, announces .* The server, which the proxy reaches over TLS, does offer SCRAM-SHA-256-PLUS/);
      expect((plainRefusal as { hint: string }).hint).toContain('enableChannelBinding: false');
      expect((plainRefusal as { hint: string }).hint).toContain('sslmode=disable in its --postgres-url');
      const tlsRefusal = await withBinding(true).catch((error: unknown) => error);
      expect(tlsRefusal).toMatchObject({ code: '28000' });
      expect((tlsRefusal as { detail: string }).detail).toMatch(/its TLS ending at the proxy/);
      // The way out the hint names: a proxy that reaches the server without TLS.
      const plainUpstream = await startTestProxy(`${pg.url}?sslmode=disable`, { tlsCert: certificate.cert, tlsKey: certificate.key });
      for (const tls of [false, true]) {
        const client = await withBinding(tls, plainUpstream);
        expect((await client.query('SELECT current_user AS who')).rows[0]!.who).toBe(USERS.scram);
        await client.end();
      }
    } finally {
      await server.configure({ ssl: 'off' });
    }
  });

  it('lets SCRAM clients that announce channel binding in when the proxy reaches the server without TLS', async () => {
    const certificate = selfSignedCertificate();
    const proxy = await startTestProxy(pg.url, { tlsCert: certificate.cert, tlsKey: certificate.key });
    for (const tls of [false, true]) {
      const client = await connectThrough(proxy.url(databaseOf(pg.url), USERS.scram, PASSWORD), {
        enableChannelBinding: true,
        ssl: tls ? { rejectUnauthorized: false } : false,
      } as Partial<import('pg').ClientConfig>);
      expect((await client.query('SELECT current_user AS who')).rows[0]!.who).toBe(USERS.scram);
      await client.end();
    }
  });
});
