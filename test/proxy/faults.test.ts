/**
 * Bad input and bad days: each case ends one socket with a clear error and leaves every other
 * session, and the proxy, working.
 */
import { describe, expect, it } from 'vitest';
import { encodeMessage, encodeStartupMessage, PROTOCOL_3_0 } from '../../src/proxy/protocol/messages.js';
import { usePostgres } from '../support/harness.js';
import { waitFor } from '../support/spawn.js';
import { connectThrough, databaseOf, errorsIn, rawConnect, rawSession, readUntilClose, startTestProxy } from './support.js';
import { seededRandom } from '../support/random.js';

describe('fault handling', () => {
  const pg = usePostgres();

  it('answers garbage and oversized lengths with a protocol error, and keeps serving', async () => {
    const proxy = await startTestProxy(pg.url);
    const bystander = await connectThrough(proxy.url(databaseOf(pg.url)));

    const http = await rawConnect(proxy.port);
    const httpAnswer = readUntilClose(http);
    http.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(errorsIn(await httpAnswer)[0]).toMatchObject({ S: 'FATAL', C: '08P01', M: expect.stringContaining('invalid startup packet length') });

    const huge = await rawConnect(proxy.port);
    const hugeAnswer = readUntilClose(huge);
    huge.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]));
    expect(errorsIn(await hugeAnswer)[0]).toMatchObject({ C: '08P01' });

    // After login: a frame claiming 2 GB, and one claiming less than its own length field.
    for (const length of [0x7ffffff0, 2]) {
      const session = await rawSession(proxy.port, databaseOf(pg.url));
      const answer = readUntilClose(session);
      const frame = Buffer.from([0x51, 0, 0, 0, 0]);
      frame.writeInt32BE(length, 1);
      session.write(frame);
      expect(errorsIn(await answer)[0]).toMatchObject({ C: '08P01', M: expect.stringContaining(`invalid length ${length}`) });
    }
    expect((await bystander.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await bystander.end();
  });

  it('times out a client that sends half a startup packet and stalls', async () => {
    // Long enough for the well-behaved login below on a busy machine, short enough to wait out.
    const proxy = await startTestProxy(pg.url, { clientLoginTimeoutMs: 1_000 });
    const stalled = await rawConnect(proxy.port);
    const answer = readUntilClose(stalled);
    stalled.write(encodeStartupMessage(PROTOCOL_3_0, [['user', 'postgres']]).subarray(0, 6));
    expect(errorsIn(await answer)[0]).toMatchObject({ C: '08006', M: expect.stringContaining('login timeout') });
    const client = await connectThrough(proxy.url(databaseOf(pg.url)));
    await client.end();
  });

  it('refuses connections beyond --max-client-conn with 53300 and serves again once one leaves', async () => {
    const proxy = await startTestProxy(pg.url, { maxClientConn: 5 });
    const url = proxy.url(databaseOf(pg.url));
    const held = await Promise.all(Array.from({ length: 5 }, () => connectThrough(url)));
    const flood = await Promise.allSettled(Array.from({ length: 40 }, () => connectThrough(url)));
    expect(flood.every((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === '53300')).toBe(true);
    expect((await held[0]!.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await held.pop()!.end();
    // The place is free once the proxy has seen that client go, which may be a moment after end().
    let refusedMeanwhile = 0;
    const next = await waitFor(
      () =>
        connectThrough(url).catch((error: { code?: string }) => {
          if (error.code !== '53300') throw error;
          refusedMeanwhile++;
          return undefined;
        }),
      10_000,
      'a place to come free',
    );
    expect((await next.query('SELECT 2 AS ok')).rows).toEqual([{ ok: 2 }]);
    expect((await proxy.metrics.text()).body).toMatch(new RegExp(`tandem_proxy_rejected_connections_total\\{reason="max_client_conn"\\} ${40 + refusedMeanwhile}`));
    await Promise.all([...held, next].map((c) => c.end()));
  });

  it('counts sockets that never send a startup packet against --max-client-conn, and closes them at the login timeout', async () => {
    const proxy = await startTestProxy(pg.url, { maxClientConn: 3, clientLoginTimeoutMs: 3_000 });
    const url = proxy.url(databaseOf(pg.url));
    const silent = await Promise.all(Array.from({ length: 3 }, () => rawConnect(proxy.port)));
    const silentAnswers = silent.map((socket) => readUntilClose(socket));
    // Every place is held by a socket that says nothing: a real client is refused, not served.
    await expect(connectThrough(url)).rejects.toMatchObject({ code: '53300' });
    // A flood past the hard limit (2 × 3 + 100 sockets) is closed unread, and the proxy keeps going.
    const flood = await Promise.all(Array.from({ length: 120 }, () => rawConnect(proxy.port)));
    const floodAnswers = await Promise.all(flood.map((socket) => readUntilClose(socket)));
    expect(floodAnswers.filter((bytes) => bytes.length === 0).length).toBeGreaterThanOrEqual(120 - 103);
    // The login timeout still closes the silent ones, with its error; then clients are served again.
    for (const bytes of await Promise.all(silentAnswers)) expect(errorsIn(bytes)[0]).toMatchObject({ C: '08006', M: expect.stringContaining('login timeout') });
    const client = await connectThrough(url);
    expect((await client.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await client.end();
  });

  it('gives clients an error, not a hang, while the server is down, and recovers when it is back', async () => {
    const server = pg.server;
    if (server.kind !== 'embedded') return;
    const proxy = await startTestProxy(pg.url);
    const url = proxy.url(databaseOf(pg.url));
    const connected = await connectThrough(url);
    const lost = new Promise<unknown>((resolve) => connected.once('error', resolve));
    await server.pause();
    try {
      // The server's fast shutdown tells the session itself (57P01), passed through untouched.
      expect(await lost).toMatchObject({ code: '57P01' });
      await expect(connectThrough(url)).rejects.toMatchObject({ code: '08006', message: expect.stringContaining('the tandem proxy') });
    } finally {
      await server.resume();
    }
    const again = await connectThrough(url);
    expect((await again.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await again.end();
  });

  it('stops reading the server while a client does not read, instead of buffering the result', async () => {
    const proxy = await startTestProxy(pg.url);
    const observer = await pg.client();
    const session = await rawSession(proxy.port, databaseOf(pg.url));
    session.on('error', () => {});
    session.pause();
    // About 200 MB of result; a proxy without backpressure would pull all of it off the server.
    session.write(encodeMessage(0x51, Buffer.from(`SELECT repeat('x', 1000) FROM generate_series(1, 200000) /* stalled-reader */\0`)));
    await waitFor(async () => {
      const { rows } = await observer.query(
        `SELECT wait_event FROM pg_stat_activity WHERE query LIKE '%stalled-reader%' AND pid <> pg_backend_pid()`,
      );
      // The server blocks writing to the proxy: the proxy stopped reading from it.
      return rows[0]?.wait_event === 'ClientWrite' ? true : undefined;
    }, 30_000, 'the server to block on a full socket');
    const sent = Number(/^tandem_proxy_client_sent_bytes_total (\d+)/m.exec((await proxy.metrics.text()).body)![1]);
    expect(sent).toBeLessThan(50_000_000);
    session.destroy();
  });

  it('survives a seeded protocol fuzz and then serves a well-behaved client', async () => {
    // A mutated packet that promises more bytes than it sends ends at the login timeout: short enough
    // to wait out, long enough for the authenticated sessions' own logins on a busy machine.
    const proxy = await startTestProxy(pg.url, { clientLoginTimeoutMs: 1_000 });
    const database = databaseOf(pg.url);
    const random = seededRandom(20_250_101);
    const byte = () => Math.floor(random() * 256);
    const startup = encodeStartupMessage(PROTOCOL_3_0, [['user', 'postgres'], ['database', database]]);
    const query = encodeMessage(0x51, Buffer.from('SELECT 1\0'));
    const mutate = (source: Buffer): Buffer => {
      const copy = Buffer.from(source);
      const edits = 1 + Math.floor(random() * 4);
      for (let i = 0; i < edits; i++) copy[Math.floor(random() * copy.length)] = byte();
      return random() < 0.3 ? copy.subarray(0, Math.floor(random() * copy.length)) : copy;
    };
    const cases = 300;
    const payloads = Array.from({ length: cases }, (_, n) => {
      const kind = n % 3;
      return kind === 0 ? Buffer.from(Array.from({ length: 1 + Math.floor(random() * 64) }, byte)) : mutate(kind === 1 ? startup : query);
    });
    const send = async (payload: Buffer, n: number): Promise<void> => {
      // Mutated query frames go to an authenticated session; the rest to a fresh connection.
      const socket = n % 6 === 2 ? await rawSession(proxy.port, database) : await rawConnect(proxy.port);
      const closed = readUntilClose(socket);
      socket.write(payload);
      socket.end();
      await closed;
    };
    // Ten at a time, so the cases that wait for the login timeout do not add up.
    for (let first = 0; first < cases; first += 10) {
      await Promise.all(payloads.slice(first, first + 10).map((payload, i) => send(payload, first + i)));
    }
    const client = await connectThrough(proxy.url(database));
    expect((await client.query('SELECT 42 AS answer')).rows).toEqual([{ answer: 42 }]);
    await client.end();
  });
});
