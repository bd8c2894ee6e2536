import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import PgModule from 'pg';
import { usePostgres } from '../support/harness.js';
import { encodeCancelRequest } from '../../src/proxy/protocol/messages.js';
import { TWO_SHAPES, connectThrough, createUsersTable, databaseOf, rawConnect, readUntilClose, simulateVersions, startTestProxy } from './support.js';

describe('node-postgres through the proxy', () => {
  const pg = usePostgres();

  it('two clients on two versions see two shapes of the same table', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const proxy = await startTestProxy(pg.url);
    const db = databaseOf(pg.url);
    const old = await connectThrough(proxy.url(`${db}@01_init`));
    const latest = await connectThrough(proxy.url(`${db}@latest`));
    const plain = await connectThrough(proxy.url(db));
    try {
      const a = await old.query('SELECT * FROM users ORDER BY id');
      const b = await latest.query('SELECT * FROM users ORDER BY id');
      const c = await plain.query('SHOW search_path');
      expect(a.fields.map((f) => f.name)).toEqual(['id', 'email']);
      expect(b.fields.map((f) => f.name)).toEqual(['id', 'mail', 'full_name']);
      expect(b.rows[0]).toEqual({ id: 1, mail: 'a@example.com', full_name: 'Ada' });
      expect(c.rows[0]!.search_path).toBe('"public_02_rename", "public"');
      // The version is the session default, so RESET ALL and DISCARD ALL keep it.
      await old.query('SET search_path = public');
      await old.query('RESET ALL');
      expect((await old.query('SHOW search_path')).rows[0]!.search_path).toBe('"public_01_init", "public"');
      await old.query('DISCARD ALL');
      expect((await old.query('SELECT * FROM users LIMIT 1')).fields.map((f) => f.name)).toEqual(['id', 'email']);
      // Migration name, version schema name and "previous" all name a version.
      const byPrevious = await connectThrough(proxy.url(`${db}@previous`));
      const bySchema = await connectThrough(proxy.url(`${db}@public_01_init`));
      expect((await byPrevious.query('SHOW search_path')).rows[0]!.search_path).toBe('"public_01_init", "public"');
      expect((await bySchema.query('SHOW search_path')).rows[0]!.search_path).toBe('"public_01_init", "public"');
      await Promise.all([byPrevious.end(), bySchema.end()]);
    } finally {
      await Promise.all([old.end(), latest.end(), plain.end()]);
    }
  });

  it('runs simple and extended queries, prepared statements and large results', async () => {
    const proxy = await startTestProxy(pg.url);
    const client = await connectThrough(proxy.url(databaseOf(pg.url)));
    try {
      expect((await client.query('SELECT 1 AS one; SELECT 2 AS two')) as unknown).toHaveLength(2);
      const extended = await client.query('SELECT $1::int + $2::int AS sum', [2, 3]);
      expect(extended.rows).toEqual([{ sum: 5 }]);
      for (let i = 0; i < 3; i++) {
        const prepared = await client.query({ name: 'square', text: 'SELECT $1::int * $1::int AS sq', values: [i] });
        expect(prepared.rows).toEqual([{ sq: i * i }]);
      }
      // About 20 MB through the proxy in one result.
      const big = await client.query(`SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 20000) g`);
      expect(big.rowCount).toBe(20000);
      expect(big.rows[19999].g).toBe(20000);
      await expect(client.query('SELECT * FROM no_such_table')).rejects.toMatchObject({ code: '42P01' });
      expect((await client.query('SELECT 42 AS still_fine')).rows).toEqual([{ still_fine: 42 }]);
    } finally {
      await client.end();
    }
  });

  it('copies in and out with pg-copy-streams', async () => {
    const proxy = await startTestProxy(pg.url);
    const client = await connectThrough(proxy.url(databaseOf(pg.url)));
    try {
      await client.query('CREATE TABLE items (id int, label text)');
      const rows = Array.from({ length: 50_000 }, (_, i) => `${i}\tlabel ${i}\n`);
      await pipeline(Readable.from(rows), client.query(copyFrom('COPY items FROM STDIN')));
      expect((await client.query('SELECT count(*)::int AS n FROM items')).rows[0]!.n).toBe(50_000);
      let bytes = 0;
      let lines = 0;
      await pipeline(
        client.query(copyTo('COPY items TO STDOUT')),
        new Writable({
          write(chunk: Buffer, _encoding, done) {
            bytes += chunk.length;
            for (const byte of chunk) if (byte === 10) lines++;
            done();
          },
        }),
      );
      expect(lines).toBe(50_000);
      expect(bytes).toBe(rows.join('').length);
    } finally {
      await client.end();
    }
  });

  it('delivers LISTEN/NOTIFY', async () => {
    const proxy = await startTestProxy(pg.url);
    const listener = await connectThrough(proxy.url(databaseOf(pg.url)));
    const notifier = await connectThrough(proxy.url(databaseOf(pg.url)));
    try {
      await listener.query('LISTEN jobs');
      const received = new Promise<string | undefined>((resolve) => listener.once('notification', (n) => resolve(n.payload)));
      await notifier.query(`NOTIFY jobs, 'job 7'`);
      expect(await received).toBe('job 7');
    } finally {
      await Promise.all([listener.end(), notifier.end()]);
    }
  });

  it('cancels a running query with a CancelRequest routed to its backend', async () => {
    const proxy = await startTestProxy(pg.url);
    const url = proxy.url(databaseOf(pg.url));
    const client = await connectThrough(url);
    const observer = await connectThrough(url);
    try {
      const sleep = new PgModule.Query('SELECT pg_sleep(60)');
      const failed = new Promise<unknown>((resolve) => sleep.on('error', resolve));
      client.query(sleep);
      // Cancel only once the sleep really runs on the server, or the request could arrive before it.
      for (;;) {
        const { rows } = await observer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`);
        if (rows[0]!.n > 0) break;
      }
      // pg's Client#cancel opens a new connection and sends CancelRequest with the session's key.
      const canceller = new PgModule.Client({ connectionString: url }) as unknown as { cancel(client: unknown, query: unknown): void };
      canceller.cancel(client, sleep);
      expect(await failed).toMatchObject({ code: '57014' });
      expect((await client.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await Promise.all([client.end(), observer.end()]);
    }
  });

  it('closes quietly when the client sends Terminate before its startup packet (pg: connect(), then end() at once)', async () => {
    const proxy = await startTestProxy(pg.url);
    const url = proxy.url(databaseOf(pg.url));
    for (let round = 0; round < 5; round++) {
      // pg's own quick-disconnect test: Terminate goes out before the StartupMessage. PostgreSQL
      // closes without a word (connect() then never settles); an ErrorResponse from the proxy would
      // reject connect(), which such code never handles, and crash the process.
      const client = new PgModule.Client({ connectionString: url });
      const errors: unknown[] = [];
      client.on('error', (error: unknown) => errors.push(error));
      client.connect().catch((error: unknown) => errors.push(error));
      const ended = new Promise<void>((resolve) => client.once('end', resolve));
      await client.end();
      await ended;
      // Whatever the proxy sent was parsed before the close; let the rejection it caused run.
      await new Promise((resolve) => setImmediate(resolve));
      expect(errors).toEqual([]);
    }
    const client = await connectThrough(url);
    expect((await client.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await client.end();
  });

  it('holds a cancel request open until the server has it, so a cancel sent while idle never hits the next statement', async () => {
    const proxy = await startTestProxy(pg.url);
    const client = await connectThrough(proxy.url(databaseOf(pg.url)));
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const key = Buffer.alloc(8);
    key.writeInt32BE(processID, 0);
    key.writeInt32BE(secretKey, 4);
    let cancelled = 0;
    for (let round = 0; round < 30; round++) {
      // As libpq's PQcancel: send the request, then wait for the other side to close.
      const socket = await rawConnect(proxy.port);
      const closed = readUntilClose(socket);
      socket.write(encodeCancelRequest(key));
      expect((await closed).length).toBe(0);
      await client.query('SELECT pg_sleep(0.02)').catch((error: { code?: string }) => {
        if (error.code !== '57014') throw error;
        cancelled++;
      });
    }
    expect(cancelled).toBe(0);
    await client.end();
  });
});
