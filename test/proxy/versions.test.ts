/** Version routing against the state schema: unknown, default, client-chosen, new and retired versions. */
import { describe, expect, it } from 'vitest';
import { usePostgres } from '../support/harness.js';
import { waitFor } from '../support/spawn.js';
import { TWO_SHAPES, addVersion, connectThrough, createUsersTable, databaseOf, simulateVersions, startTestProxy, type TestProxy } from './support.js';

/** Waits until the proxy's version list, fed by NOTIFY (no refresh is forced here), satisfies `ok`. */
function untilVersions(proxy: TestProxy, database: string, ok: (versions: string[]) => boolean): Promise<true> {
  return waitFor(async () => (ok(proxy.status().databases[database]?.versions ?? []) ? true : undefined), 30_000, 'the proxy to see the new versions');
}

describe('version routing', () => {
  const pg = usePostgres();

  it('refuses an unknown version with 3D000 and lists the versions that exist', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const proxy = await startTestProxy(pg.url);
    const database = databaseOf(pg.url);
    const failure = await connectThrough(proxy.url(`${database}@03_nope`)).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: '3D000', severity: 'FATAL', message: `version "03_nope" of database "${database}" does not exist` });
    expect((failure as { detail: string }).detail).toBe('Versions that exist, newest first: 02_rename (public_02_rename), 01_init (public_01_init); aliases: latest, previous.');
  });

  it('passes the server\'s verdict on a database that does not exist', async () => {
    const proxy = await startTestProxy(pg.url);
    await expect(connectThrough(proxy.url('no_such_database@latest'))).rejects.toMatchObject({
      code: '3D000',
      message: 'database "no_such_database" does not exist',
    });
  });

  it('reaches a database whose own name ends in "@": "name@" with the default version, "name@@version" with a chosen one', async () => {
    const database = `${databaseOf(pg.url)}_at@`;
    await pg.server.admin(`CREATE DATABASE "${database}"`);
    try {
      // Raw in the path: node-postgres does not decode %40 in a connection string's database.
      const url = pg.url.replace(/\/[^/]*$/, `/${database}`);
      await createUsersTable(url);
      await simulateVersions(url, TWO_SHAPES);
      const proxy = await startTestProxy(pg.url);
      const plain = await connectThrough(proxy.url(database));
      expect((await plain.query('SELECT current_database() AS db, current_setting($1) AS path', ['search_path'])).rows[0]).toEqual({ db: database, path: '"public_02_rename", "public"' });
      const old = await connectThrough(proxy.url(`${database}@01_init`));
      expect((await old.query('SELECT current_database() AS db, current_setting($1) AS path', ['search_path'])).rows[0]).toEqual({ db: database, path: '"public_01_init", "public"' });
      await Promise.all([plain.end(), old.end()]);
      // A name that merely ends in "@" (an empty version) is a database the server does not know, with a hint.
      await expect(connectThrough(proxy.url(`${databaseOf(pg.url)}@`))).rejects.toMatchObject({ code: '3D000', hint: expect.stringContaining('ending in "@"') });
      await proxy.shutdown(0);
    } finally {
      await pg.server.admin(`DROP DATABASE "${database}" WITH (FORCE)`);
    }
  });

  it('uses server defaults before any migration, and --default-version for plain names', async () => {
    const database = databaseOf(pg.url);
    const bare = await startTestProxy(pg.url);
    for (const name of [database, `${database}@latest`]) {
      const client = await connectThrough(bare.url(name));
      expect((await client.query('SHOW search_path')).rows[0]!.search_path).toBe('"$user", public');
      await client.end();
    }
    await expect(connectThrough(bare.url(`${database}@previous`))).rejects.toMatchObject({ code: '3D000' });

    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const pinned = await startTestProxy(pg.url, { defaultVersion: '01_init' });
    const client = await connectThrough(pinned.url(database));
    expect((await client.query('SHOW search_path')).rows[0]!.search_path).toBe('"public_01_init", "public"');
    await client.end();
  });

  it('leaves a client-chosen search_path alone', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const proxy = await startTestProxy(pg.url);
    const client = await connectThrough(proxy.url(`${databaseOf(pg.url)}@01_init`), { options: '-c search_path=public' });
    expect((await client.query('SHOW search_path')).rows[0]!.search_path).toBe('public');
    expect(proxy.status().databases[databaseOf(pg.url)]!.clients.public_01_init!.clients).toBe(1);
    await client.end();
  });

  it('routes new clients to a version announced by NOTIFY, and tells clients of a retired version to reconnect', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, [{ ...TWO_SHAPES[0]! }, { ...TWO_SHAPES[1]!, status: 'complete' }]);
    const proxy = await startTestProxy(pg.url);
    const database = databaseOf(pg.url);
    const onOld = await connectThrough(proxy.url(`${database}@01_init`));
    const onLatest = await connectThrough(proxy.url(`${database}@latest`));

    // A third migration starts: latest moves for new connections, existing sessions keep their version.
    const admin = await pg.client();
    await addVersion(admin, { migration: '03_more', views: 'CREATE VIEW $S.users AS SELECT id FROM public.users', status: 'active' });
    await untilVersions(proxy, database, (v) => v.includes('public_03_more'));
    const newest = await connectThrough(proxy.url(`${database}@latest`));
    expect((await newest.query('SELECT * FROM users LIMIT 1')).fields.map((f) => f.name)).toEqual(['id']);
    expect((await onLatest.query('SELECT * FROM users LIMIT 1')).fields.map((f) => f.name)).toEqual(['id', 'mail', 'full_name']);

    // Completing it drops the oldest version schema, as `tandem complete` does.
    await admin.query('DROP SCHEMA public_01_init CASCADE');
    await admin.query(`UPDATE tandem.migrations SET status = 'complete' WHERE name = '03_more'`);
    await untilVersions(proxy, database, (v) => !v.includes('public_01_init'));
    const retired = await onOld.query('SELECT 1').catch((error: unknown) => error);
    expect(retired).toMatchObject({
      code: '57P01',
      message: `version "public_01_init" was retired by migration "02_rename"; reconnect to ${database}@latest`,
    });
    expect((await onLatest.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await Promise.all([onLatest.end(), newest.end()]);
  });
});
