/**
 * Transaction mode through the native forwarder: the thread forwards a pooled client and passes
 * its pool's server connections from client to client between transactions; anything that needs
 * the proxy's bookkeeping hands the client back to Node between two requests. Real PostgreSQL, real
 * clients (node-postgres, psql); which path forwarded a client is read from its close log line.
 */
import { execFile } from 'node:child_process';
import type net from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { usePostgres } from '../../support/harness.js';
import { waitFor } from '../../support/spawn.js';
import { selectForwarder } from '../../../src/proxy/native.js';
import { MAX_PARAMETER_SETS } from '../../../src/proxy/session/native-pooled.js';
import { encodeMessage } from '../../../src/proxy/protocol/messages.js';
import { capturedLogger, connectThrough, createUsersTable, databaseOf, errorsIn, rawSession, readUntilClose, startTestProxy, type TestProxy } from '../support.js';
import { poolingOptions } from './support.js';
import { seededRandom } from '../../support/random.js';

const db = usePostgres();
const run = promisify(execFile);
const nativeBuilt = selectForwarder('auto').forwarder !== undefined;

/** The close lines of `count` sessions, by session id. */
function closeLines(lines: Array<Record<string, unknown>>, count: number): Promise<Array<Record<string, unknown>>> {
  return waitFor(async () => {
    const closed = lines.filter((line) => line.event === 'close');
    return closed.length >= count ? closed : undefined;
  }, 10_000, `${count} close lines`);
}

async function poolRow(admin: pg.Client, database: string): Promise<{ cl_waiting: number; sv_active: number; sv_idle: number } | undefined> {
  return (await admin.query('SHOW POOLS')).rows.find((row: { database: string }) => row.database === database);
}

async function proxyWithLog(poolSize: number): Promise<{ proxy: TestProxy; lines: Array<Record<string, unknown>> }> {
  const { logger, lines } = capturedLogger();
  const proxy = await startTestProxy(db.url, { logger, pooling: poolingOptions({ settings: { poolSize } }), adminUsers: ['postgres'], adminDatabase: 'tandem' });
  return { proxy, lines };
}

describe.skipIf(!nativeBuilt)('transaction mode through the native forwarder', () => {
  it('passes two server connections among 20 clients, shows them in SHOW POOLS and the wait histogram, and forwards them natively to the end', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const clients = await Promise.all(Array.from({ length: 20 }, () => connectThrough(proxy.url(database))));
    const admin = await connectThrough(proxy.url('tandem'));
    try {
      const pids = new Set<number>();
      await Promise.all(
        clients.map(async (client, i) => {
          for (let round = 0; round < 10; round++) {
            await client.query('BEGIN');
            await client.query('UPDATE users SET full_name = $1 WHERE id = 1', [`client ${i} round ${round}`]);
            const { rows } = await client.query('SELECT full_name, pg_backend_pid() AS pid FROM users WHERE id = 1');
            // Inside its transaction the client sees its own write: one server connection throughout.
            expect(rows[0].full_name).toBe(`client ${i} round ${round}`);
            pids.add(rows[0].pid);
            await client.query('COMMIT');
          }
        }),
      );
      expect(pids.size).toBeLessThanOrEqual(2);
      // Idle between transactions, the connections are the pool's idle ones, not lent.
      await expect.poll(() => poolRow(admin, database)).toMatchObject({ cl_waiting: 0, sv_active: 0 });
      const servers = (await admin.query('SHOW SERVERS')).rows.filter((row: { database: string }) => row.database === database);
      expect(servers.length).toBeGreaterThan(0);
      expect(servers.map((row: { state: string }) => row.state)).toEqual(servers.map(() => 'idle'));
      const metrics = (await proxy.metrics.text()).body;
      const waits = Number(new RegExp(`tandem_proxy_pool_wait_seconds_count\\{database="${database}",version="none"\\} (\\d+)`).exec(metrics)?.[1]);
      // A wait (0 when a connection was parked) per transaction: 20 clients × 10 × 4 statements, each its own transaction when outside BEGIN…COMMIT.
      expect(waits).toBeGreaterThanOrEqual(20 * 10);
      expect(waits).toBeLessThanOrEqual(20 * 10 * 4);
    } finally {
      await Promise.all([...clients, admin].map((client) => client.end()));
    }
    const closed = await closeLines(lines, 21);
    const forwarders = closed.filter((line) => line.database === database).map((line) => line.forwarder);
    expect(forwarders).toEqual(new Array(20).fill('native'));
  });

  it('keeps a client that names statements in the thread, hands one back to Node when it sets a parameter or sends a long query, and serves them right', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const named = await connectThrough(proxy.url(database));
    const setter = await connectThrough(proxy.url(database));
    const long = await connectThrough(proxy.url(database));
    const plain = await connectThrough(proxy.url(database));
    try {
      // Natively, unnamed and then named: the thread prepares it on whichever connection comes next.
      expect((await named.query('SELECT count(*)::int AS n FROM users')).rows[0].n).toBe(2);
      for (const id of [1, 2, 1]) expect((await named.query({ name: 'by-id', text: 'SELECT id FROM users WHERE id = $1', values: [id] })).rows[0].id).toBe(id);
      // A session SET pins the client (Node decides, with PostgreSQL's parser); a word like "hold" in a name does not.
      await setter.query('SELECT 1 AS threshold_hold_temp');
      await setter.query('SET statement_timeout = 1234');
      expect((await setter.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('1234ms');
      // Longer than the thread holds: Node streams it.
      const big = `SELECT length('${'x'.repeat(100_000)}') AS n`;
      expect((await long.query(big)).rows[0].n).toBe(100_000);
      expect((await plain.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    } finally {
      await Promise.all([named, setter, long].map((client) => client.end()));
      await plain.end();
    }
    const closed = await closeLines(lines, 4);
    const byQueries = closed.map((line) => line.forwarder);
    // The pinned client holds one connection to its end, in Node; the others share the other. The
    // long query's client went back to the thread once it was answered, with nothing left in Node.
    expect(byQueries.filter((f) => f === 'node')).toHaveLength(1);
    expect(byQueries.filter((f) => f === 'native')).toHaveLength(3);
  });

  it('takes a client back from Node between transactions once Node holds nothing of it, with its setting, and its figures go on', async () => {
    const database = databaseOf(db.url);
    const { logger, lines } = capturedLogger('debug');
    const proxy = await startTestProxy(db.url, { logger, pooling: poolingOptions({ settings: { poolSize: 1 } }), adminUsers: ['postgres'], adminDatabase: 'tandem' });
    const client = await connectThrough(proxy.url(database));
    const admin = await connectThrough(proxy.url('tandem'));
    const backLines = () => lines.filter((line) => line.msg === 'pooled client back to the native forwarder between transactions');
    const mine = async () => (await admin.query('SHOW CLIENTS')).rows.find((row) => row.database === database);
    const stats = async () => (await admin.query('SHOW STATS')).rows.find((row) => row.database === database);
    try {
      expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      // A tracked setting: Node records it (the thread cannot), then gives the client back.
      await client.query('SET extra_float_digits = 2');
      expect(backLines()).toHaveLength(1);
      for (let i = 0; i < 3; i++) expect((await client.query('SHOW extra_float_digits')).rows[0].extra_float_digits).toBe('2');
      // Still in the thread: no second hand-back and return.
      expect(backLines()).toHaveLength(1);
      // What Node counted is where the thread went on from: five transactions, five queries.
      expect(await stats()).toMatchObject({ total_xact_count: '5', total_query_count: '5' });
      await client.query('SELECT 2');
      expect(await stats()).toMatchObject({ total_xact_count: '6', total_query_count: '6' });
      expect((await mine())?.prepared_statements).toBe(0);
    } finally {
      await Promise.all([client.end(), admin.end()]);
    }
    expect((await closeLines(lines, 2)).find((line) => line.database === database)).toMatchObject({ forwarder: 'native' });
  });

  it('hands back a client whose function changed a reported parameter, so the next client of that connection gets its own', async () => {
    const database = databaseOf(db.url);
    await db.query(`CREATE OR REPLACE FUNCTION public.rename_me() RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.set_config('application_name', 'renamed', false); RETURN 'ok'; END $$`);
    const { proxy } = await proxyWithLog(1);
    const renamer = await connectThrough(proxy.url(database), { application_name: 'one' });
    const other = await connectThrough(proxy.url(database), { application_name: 'two' });
    try {
      // The statement text has no word that pins; the server's ParameterStatus tells the thread.
      expect((await renamer.query('SELECT public.rename_me() AS r')).rows[0].r).toBe('ok');
      expect((await renamer.query(`SELECT current_setting('application_name') AS app`)).rows[0].app).toBe('renamed');
      expect((await other.query(`SELECT current_setting('application_name') AS app`)).rows[0].app).toBe('two');
      expect((await renamer.query(`SELECT current_setting('application_name') AS app`)).rows[0].app).toBe('renamed');
    } finally {
      await Promise.all([renamer.end(), other.end()]);
    }
  });

  it(`keeps thread pools for at most ${MAX_PARAMETER_SETS} sets of client parameters per pool, and forwards clients with another set in Node`, async () => {
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const total = MAX_PARAMETER_SETS + 3;
    // One after another, each with its own application_name (as clients that put a host or pid in it do).
    for (let i = 0; i < total; i++) {
      const client = await connectThrough(proxy.url(database), { application_name: `app-${i}` });
      expect((await client.query(`SELECT current_setting('application_name') AS app`)).rows[0].app).toBe(`app-${i}`);
      await client.end();
    }
    // A set the thread already has a pool for still goes natively.
    const again = await connectThrough(proxy.url(database), { application_name: 'app-0' });
    expect((await again.query('SELECT 1 AS n')).rows[0].n).toBe(1);
    await again.end();
    const closed = await closeLines(lines, total + 1);
    const forwarders = closed.map((line) => line.forwarder);
    expect(forwarders.filter((f) => f === 'native')).toHaveLength(MAX_PARAMETER_SETS + 1);
    expect(forwarders.filter((f) => f === 'node')).toHaveLength(3);
    expect(lines.filter((line) => typeof line.msg === 'string' && line.msg.includes('different sets of client parameters'))).toHaveLength(1);
  });

  it('answers a broken message with FATAL 08P01, in a transaction or out of one, and its connection serves the next client', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy } = await proxyWithLog(1);
    const admin = await connectThrough(proxy.url('tandem'));
    try {
      // Outside a transaction: a Query header with a length no message can have.
      const idle = await rawSession(proxy.port, database);
      const idleAnswer = readUntilClose(idle);
      idle.write(Buffer.from([0x51, 0, 0, 0, 2]));
      // Inside one: the connection is the client's when the broken header comes, mid-request.
      const busy = await rawSession(proxy.port, database);
      const busyAnswer = readUntilClose(busy);
      busy.write(encodeMessage(0x51, Buffer.from(`BEGIN; UPDATE users SET full_name = 'lost' WHERE id = 1\0`)));
      await waitFor(async () => ((await poolRow(admin, database))?.sv_active === 1 ? true : undefined), 10_000, 'the transaction holding the connection');
      busy.write(Buffer.concat([encodeMessage(0x50, Buffer.from('\0SELECT 1\0\0\0')), Buffer.from([0x42, 0xff, 0xff, 0xff, 0xff])]));
      for (const answer of [await idleAnswer, await busyAnswer]) {
        expect(errorsIn(answer).at(-1)).toMatchObject({ S: 'FATAL', C: '08P01', M: expect.stringMatching(/^invalid length -?\d+ for message type '[QB]'$/) });
      }
      // The one connection was rolled back (or closed) and serves the next client.
      const next = await connectThrough(proxy.url(database));
      expect((await next.query('SELECT full_name FROM users WHERE id = 1')).rows[0].full_name).toBe('Ada');
      await next.end();
    } finally {
      await admin.end();
    }
  });

  it('survives a seeded fuzz of request streams, leaks no server connection, and serves a well-behaved client', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy } = await proxyWithLog(2);
    const admin = await connectThrough(proxy.url('tandem'));
    const random = seededRandom(20_261_130);
    const frames = [
      encodeMessage(0x50, Buffer.from('\0SELECT $1::int\0\0\0')),
      encodeMessage(0x42, Buffer.from('\0\0\0\0\0\x01\0\0\0\x011\0\0')),
      encodeMessage(0x44, Buffer.from('P\0')),
      encodeMessage(0x45, Buffer.from('\0\0\0\0\0')),
      encodeMessage(0x53, Buffer.alloc(0)),
      encodeMessage(0x51, Buffer.from('SELECT 1\0')),
      encodeMessage(0x51, Buffer.from('BEGIN\0')),
      encodeMessage(0x48, Buffer.alloc(0)),
      encodeMessage(0x64, Buffer.from('1\tx\n')),
      encodeMessage(0x58, Buffer.alloc(0)),
    ];
    const payload = (): Buffer => {
      const stream = Buffer.concat(Array.from({ length: 1 + Math.floor(random() * 6) }, () => frames[Math.floor(random() * frames.length)]!));
      if (random() < 0.5) return stream;
      for (let edits = 1 + Math.floor(random() * 3); edits > 0; edits--) stream[Math.floor(random() * stream.length)] = Math.floor(random() * 256);
      return random() < 0.3 ? stream.subarray(0, Math.floor(random() * stream.length)) : stream;
    };
    const payloads = Array.from({ length: 150 }, payload);
    try {
      for (let first = 0; first < payloads.length; first += 10) {
        await Promise.all(
          payloads.slice(first, first + 10).map(async (bytes) => {
            const socket = await rawSession(proxy.port, database);
            const closed = readUntilClose(socket);
            socket.write(bytes);
            socket.end();
            await closed;
          }),
        );
      }
      const client = await connectThrough(proxy.url(database));
      expect((await client.query('SELECT count(*)::int AS n FROM users')).rows[0].n).toBe(2);
      await client.end();
      // Every connection came back to be lent again: none is held by a client that is gone.
      await expect.poll(() => poolRow(admin, database), { timeout: 5_000 }).toMatchObject({ cl_waiting: 0, sv_active: 0 });
    } finally {
      await admin.end();
    }
  });

  it('fails a client that waited query_wait_timeout with 08P01, and logs its end as that error', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { logger, lines } = capturedLogger();
    const proxy = await startTestProxy(db.url, { logger, pooling: poolingOptions({ settings: { poolSize: 1, queryWaitTimeoutMs: 300 } }) });
    const holder = await connectThrough(proxy.url(database));
    await holder.query('BEGIN');
    const waiter = await connectThrough(proxy.url(database));
    const error = (await waiter.query('SELECT 1').catch((e: unknown) => e)) as { code?: string; message?: string };
    expect(error).toMatchObject({ code: '08P01', message: expect.stringContaining('query_wait_timeout') });
    const [closed] = await closeLines(lines, 1);
    expect(closed).toMatchObject({ forwarder: 'native', reason: expect.stringMatching(/^08P01: .*query_wait_timeout/) });
    await holder.query('COMMIT');
    await holder.end();
  });

  it('serves requests a client pipelines, transactions included, in order, and a Flush in the middle of one', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const session = await rawSession(proxy.port, database);
    const query = (sql: string) => encodeMessage(0x51, Buffer.from(`${sql}\0`));
    const extended = (value: string) =>
      Buffer.concat([
        encodeMessage(0x50, Buffer.from('\0SELECT $1::int + 1\0\0\0')),
        encodeMessage(0x42, Buffer.concat([Buffer.from('\0\0\0\0\0\x01'), Buffer.from([0, 0, 0, value.length]), Buffer.from(value), Buffer.from('\0\0')])),
        encodeMessage(0x45, Buffer.from('\0\0\0\0\0')),
        encodeMessage(0x53, Buffer.alloc(0)),
      ]);
    // Five requests in one write, before any answer: two transactions' worth, across connections or not.
    const answers = collectUntilReady(session, 5);
    session.write(Buffer.concat([query('SELECT 1'), query('BEGIN'), extended('41'), query(`UPDATE users SET full_name = 'piped' WHERE id = 1; COMMIT`), extended('7')]));
    const { rows, ready } = await answers;
    expect(rows).toEqual(['1', '42', '8']);
    expect(ready).toEqual(['I', 'T', 'T', 'I', 'I']);
    // A Flush: the replies so far go out, the connection stays the client's until its Sync.
    const flushed = collectUntilReady(session, 1);
    session.write(Buffer.concat([encodeMessage(0x50, Buffer.from('\0SELECT 5\0\0\0')), encodeMessage(0x48, Buffer.alloc(0)), encodeMessage(0x42, Buffer.from('\0\0\0\0\0\0\0\0')), encodeMessage(0x45, Buffer.from('\0\0\0\0\0')), encodeMessage(0x53, Buffer.alloc(0))]));
    expect((await flushed).rows).toEqual(['5']);
    session.end(encodeMessage(0x58, Buffer.alloc(0)));
    const [closed] = await closeLines(lines, 1);
    expect(closed?.forwarder).toBe('native');
    expect((await db.query('SELECT full_name FROM users WHERE id = 1')).rows[0].full_name).toBe('piped');
  });

  it('runs COPY FROM STDIN and psql scripts natively', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(1);
    const rows = Array.from({ length: 2000 }, (_, i) => `${i + 10}\tcopied ${i}\tc${i}@example.com`).join('\n');
    const script = join(mkdtempSync(join(tmpdir(), 'tandem-copy-')), 'copy.sql');
    writeFileSync(script, `BEGIN;\nCOPY users (id, full_name, email) FROM STDIN;\n${rows}\n\\.\nCOMMIT;\nSELECT count(*) FROM users;\n`);
    const { stdout } = await run('psql', ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', '-d', proxy.url(database), '-f', script]);
    expect(stdout.trim().split('\n').pop()).toBe('2002');
    const closed = await closeLines(lines, 1);
    expect(closed.at(-1)?.forwarder).toBe('native');
  });
});

/** The first column of every DataRow and the status of every ReadyForQuery, until `count` of those. */
function collectUntilReady(socket: net.Socket, count: number): Promise<{ rows: string[]; ready: string[] }> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const rows: string[] = [];
    const ready: string[] = [];
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 5 && buffer.length >= 1 + buffer.readInt32BE(1)) {
        const type = buffer[0]!;
        const body = buffer.subarray(5, 1 + buffer.readInt32BE(1));
        buffer = buffer.subarray(1 + buffer.readInt32BE(1));
        if (type === 0x44) rows.push(body.subarray(6, 6 + body.readInt32BE(2)).toString());
        if (type === 0x45) reject(new Error(`error: ${body.toString().replaceAll('\0', ' ')}`));
        if (type === 0x5a) ready.push(String.fromCharCode(body[0]!));
        if (ready.length === count) {
          socket.removeListener('data', onData);
          resolve({ rows, ready });
          return;
        }
      }
    };
    socket.on('data', onData);
  });
}
