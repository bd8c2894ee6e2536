/**
 * Named (protocol-level) prepared statements through the native forwarder in transaction mode: the
 * thread keeps pool/prepared.ts's bookkeeping itself (server names tandem_ + sha1, what each server
 * connection holds, Parse injected where missing, replies dropped and inserted in order), so such
 * clients are not handed back to Node. Real PostgreSQL, real clients (pgbench, node-postgres,
 * postgres.js, raw protocol); which path forwarded a client is read from its close log line.
 */
import { execFile, spawnSync } from 'node:child_process';
import type net from 'node:net';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import postgres from 'postgres';
import { usePostgres } from '../../support/harness.js';
import { waitFor } from '../../support/spawn.js';
import { selectForwarder } from '../../../src/proxy/native.js';
import { serverStatementName } from '../../../src/proxy/pool/prepared.js';
import { encodeMessage } from '../../../src/proxy/protocol/messages.js';
import { capturedLogger, connectThrough, createUsersTable, databaseOf, rawSession, startTestProxy, type TestProxy } from '../support.js';
import { poolingOptions } from './support.js';

const db = usePostgres();
const nativeBuilt = selectForwarder('auto').forwarder !== undefined;
const pgbench = spawnSync('pgbench', ['--version']).status === 0;

async function proxyWithLog(poolSize: number, maxPreparedStatements = 200): Promise<{ proxy: TestProxy; lines: Array<Record<string, unknown>> }> {
  const { logger, lines } = capturedLogger('debug');
  const proxy = await startTestProxy(db.url, { logger, pooling: poolingOptions({ maxPreparedStatements, settings: { poolSize } }), adminUsers: ['postgres'], adminDatabase: 'tandem' });
  return { proxy, lines };
}

/** How the sessions of `database` were forwarded, once `count` of them closed. */
function forwardersOf(lines: Array<Record<string, unknown>>, database: string, count: number): Promise<unknown[]> {
  return waitFor(async () => {
    const closed = lines.filter((line) => line.event === 'close' && line.database === database);
    return closed.length >= count ? closed.map((line) => line.forwarder) : undefined;
  }, 10_000, `${count} close lines`);
}

// The extended protocol, by hand.
const parse = (name: string, sql: string) => encodeMessage(0x50, Buffer.from(`${name}\0${sql}\0\0\0`));
const bind = (statement: string) => encodeMessage(0x42, Buffer.from(`\0${statement}\0\0\0\0\0\0\0`));
const execute = () => encodeMessage(0x45, Buffer.from('\0\0\0\0\0'));
const describeStatement = (name: string) => encodeMessage(0x44, Buffer.from(`S${name}\0`));
const close = (name: string) => encodeMessage(0x43, Buffer.from(`S${name}\0`));
const sync = () => encodeMessage(0x53, Buffer.alloc(0));
const flush = () => encodeMessage(0x48, Buffer.alloc(0));
const copyData = (text: string) => encodeMessage(0x64, Buffer.from(text));
const copyDone = () => encodeMessage(0x63, Buffer.alloc(0));
const query = (sql: string) => encodeMessage(0x51, Buffer.from(`${sql}\0`));

/** What the client got until `count` ReadyForQuery: each message's type letter, with a DataRow's first value and an error's code. */
function replies(socket: net.Socket, count: number): Promise<string[]> {
  let ready = 0;
  return repliesUntil(socket, (type) => type === 'Z' && ++ready === count);
}

/** As `replies`, until `last` says the message just seen is the last one awaited. */
function repliesUntil(socket: net.Socket, last: (type: string) => boolean): Promise<string[]> {
  return new Promise((resolve) => {
    let buffer = Buffer.alloc(0);
    const seen: string[] = [];
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 5 && buffer.length >= 1 + buffer.readInt32BE(1)) {
        const type = String.fromCharCode(buffer[0]!);
        const body = buffer.subarray(5, 1 + buffer.readInt32BE(1));
        buffer = buffer.subarray(1 + buffer.readInt32BE(1));
        if (type === 'D') seen.push(`D:${body.subarray(6, 6 + body.readInt32BE(2)).toString()}`);
        else if (type === 'E') seen.push(`E:${/C([0-9A-Z]{5})\0/.exec(body.toString('latin1'))?.[1]}:${/M([^\0]*)\0/.exec(body.toString('utf8'))?.[1]}`);
        else seen.push(type);
        if (last(type)) {
          socket.removeListener('data', onData);
          resolve(seen);
          return;
        }
      }
    };
    socket.on('data', onData);
  });
}

async function exchange(socket: net.Socket, bytes: Buffer, readyCount = 1): Promise<string[]> {
  const answer = replies(socket, readyCount);
  socket.write(bytes);
  return answer;
}

/**
 * A client that Node forwards: its first statement has a word the thread leaves to Node's parser
 * ("hold", as in WITH HOLD), which finds that it pins nothing; it is named, so the client goes on in
 * Node, unpinned (a client with no statement would go back to the thread).
 */
async function inNodeSession(proxy: TestProxy): Promise<net.Socket> {
  const socket = await rawSession(proxy.port, databaseOf(db.url));
  expect(await exchange(socket, Buffer.concat([parse('kept', 'SELECT 1 AS "hold"'), bind('kept'), execute(), sync()]))).toEqual(['1', '2', 'D:1', 'C', 'Z']);
  return socket;
}

function end(socket: net.Socket): void {
  socket.end(encodeMessage(0x58, Buffer.alloc(0)));
}

describe.skipIf(!nativeBuilt)('named prepared statements through the native forwarder', () => {
  it.skipIf(!pgbench)('runs pgbench -M prepared with more clients than server connections, natively to the end', async () => {
    const database = databaseOf(db.url);
    const init = spawnSync('pgbench', ['-i', '-s', '1', '-q', db.url], { encoding: 'utf8' });
    expect(init.status, init.stderr).toBe(0);
    const { proxy, lines } = await proxyWithLog(3);
    // One thread per client: pgbench prepares synchronously on first use (see transaction-mode.test.ts).
    const run = await promisify(execFile)('pgbench', ['-n', '-M', 'prepared', '-c', '8', '-j', '8', '-t', '100', proxy.url(database)], { encoding: 'utf8' });
    expect(run.stdout).toMatch(/number of transactions actually processed: 800\/800/);
    expect(run.stdout + run.stderr).not.toMatch(/error/i);
    const forwarders = await forwardersOf(lines, database, 8);
    // Not one client was handed back to Node.
    expect(forwarders.filter((f) => f !== 'native')).toEqual([]);
  });

  it('serves node-postgres named queries of 12 clients across many transactions and two server connections, natively', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const clients = await Promise.all(Array.from({ length: 12 }, () => connectThrough(proxy.url(database))));
    try {
      const pids = new Set<number>();
      await Promise.all(
        clients.map(async (client, i) => {
          for (let round = 0; round < 15; round++) {
            const id = (round % 2) + 1;
            const byId = await client.query({ name: 'by-id', text: 'SELECT id, pg_backend_pid() AS pid FROM users WHERE id = $1', values: [id] });
            expect(byId.rows[0].id).toBe(id);
            pids.add(byId.rows[0].pid);
            if (round % 3 === 0) {
              await client.query('BEGIN');
              await client.query({ name: `mine-${i}`, text: `SELECT $1::int + ${i} AS n`, values: [round] });
              const again = await client.query({ name: `mine-${i}`, text: `SELECT $1::int + ${i} AS n`, values: [round + 1] });
              expect(again.rows[0].n).toBe(round + 1 + i);
              await client.query('COMMIT');
            }
          }
        }),
      );
      expect(pids.size).toBe(2);
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
    expect(await forwardersOf(lines, database, 12)).toEqual(new Array(12).fill('native'));
  });

  it("serves postgres.js's default prepared statements natively", async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(1);
    const sql = postgres(proxy.url(database), { max: 3, onnotice: () => {} });
    try {
      for (let i = 0; i < 20; i++) {
        const rows = await sql`SELECT id FROM users WHERE id = ${(i % 2) + 1}`;
        expect(rows).toEqual([{ id: (i % 2) + 1 }]);
      }
      await Promise.all(Array.from({ length: 9 }, (_, i) => sql`SELECT ${i}::int AS n`.then((rows) => expect(rows).toEqual([{ n: i }]))));
    } finally {
      await sql.end();
    }
    const forwarders = await forwardersOf(lines, database, 1);
    expect(forwarders.length).toBeGreaterThan(0);
    expect(forwarders.filter((f) => f !== 'native')).toEqual([]);
  });

  it('names statements as Node does, so a connection the thread prepared on serves a client in Node without a second prepare', async () => {
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(1);
    const sql = 'SELECT 40 + 2 AS answer';
    const native = await rawSession(proxy.port, database);
    expect(await exchange(native, Buffer.concat([parse('q', sql), bind('q'), execute(), sync()]))).toEqual(['1', '2', 'D:42', 'C', 'Z']);
    // The thread parks the connection, then gives it back to JavaScript's pool (PARK_IDLE_MS) with its names.
    await new Promise((resolve) => setTimeout(resolve, 400));
    // A client in Node on the only connection: it knows the statement is there.
    const inNode = await inNodeSession(proxy);
    expect(await exchange(inNode, Buffer.concat([parse('other', sql), bind('other'), execute(), sync()]))).toEqual(['1', '2', 'D:42', 'C', 'Z']);
    // The names the server holds are Node's names for the statement (the thread computes the same sha1),
    // also for bodies across SHA-1's block boundaries and with parameter types.
    const bodies = [
      Buffer.from(`${sql}\0\0\0`),
      Buffer.concat([Buffer.from(`SELECT $1::text || '${'x'.repeat(30)}'\0`), Buffer.from([0, 1, 0, 0, 0, 25])]),
      Buffer.from(`SELECT '${'y'.repeat(200)}' AS long_one\0\0\0`),
    ];
    const more = bodies.slice(1).map((body, i) => encodeMessage(0x50, Buffer.concat([Buffer.from(`more${i}\0`), body])));
    expect(await exchange(native, Buffer.concat([...more, sync()]))).toEqual(['1', '1', 'Z']);
    const names = await exchange(inNode, query(`SELECT name FROM pg_prepared_statements WHERE statement <> 'SELECT 1 AS "hold"' ORDER BY name`));
    expect(names).toEqual(['T', ...bodies.map((body) => `D:${serverStatementName(body)}`).sort(), 'C', 'Z']);
    end(native);
    end(inNode);
    expect((await forwardersOf(lines, database, 2)).sort()).toEqual(['native', 'node']);
  });

  it('pipelines Parse, Bind and Execute of named statements before one Sync, preparing again on another connection', async () => {
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const client = await rawSession(proxy.port, database);
    const holder = await rawSession(proxy.port, database);
    try {
      const first = await exchange(client, Buffer.concat([parse('pid', 'SELECT pg_backend_pid()::text'), bind('pid'), execute(), sync()]));
      expect(first.slice(0, 2)).toEqual(['1', '2']);
      const firstPid = first[2];
      // Another client holds that connection in a transaction: the next request goes out on the other one.
      expect(await exchange(holder, query('BEGIN'))).toEqual(['C', 'Z']);
      const piped = await exchange(
        client,
        Buffer.concat([bind('pid'), execute(), parse('two', 'SELECT 2::text'), describeStatement('two'), bind('two'), execute(), bind('pid'), execute(), parse('', 'SELECT 3::text'), bind(''), execute(), sync()]),
      );
      // The Parse injected for "pid" on the new connection is not the client's: no ParseComplete for it.
      expect(piped.filter((reply) => !reply.startsWith('D:'))).toEqual(['2', 'C', '1', 't', 'T', '2', 'C', '2', 'C', '1', '2', 'C', 'Z']);
      const pids = piped.filter((reply) => reply.startsWith('D:') && reply !== 'D:2' && reply !== 'D:3');
      expect(pids).toHaveLength(2);
      expect(pids[0]).toBe(pids[1]);
      expect(pids[0]).not.toBe(firstPid);
      expect(piped).toContain('D:2');
      expect(piped).toContain('D:3');
      expect(await exchange(holder, query('COMMIT'))).toEqual(['C', 'Z']);
    } finally {
      end(client);
      end(holder);
    }
    expect(await forwardersOf(lines, database, 2)).toEqual(['native', 'native']);
  });

  it('answers Close of a named statement itself, lets the name be prepared again, and fails a duplicate Parse as PostgreSQL does', async () => {
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(1);
    const client = await rawSession(proxy.port, database);
    try {
      expect(await exchange(client, Buffer.concat([parse('s', 'SELECT 1::text'), bind('s'), execute(), sync()]))).toEqual(['1', '2', 'D:1', 'C', 'Z']);
      // The same name again: 42P05 with the client's name, and the rest of the pipeline skipped up to the Sync.
      expect(await exchange(client, Buffer.concat([parse('s', 'SELECT 2::text'), bind('s'), execute(), sync()]))).toEqual([
        'E:42P05:prepared statement "s" already exists',
        'Z',
      ]);
      // Still the first statement.
      expect(await exchange(client, Buffer.concat([bind('s'), execute(), sync()]))).toEqual(['2', 'D:1', 'C', 'Z']);
      // Closed (answered by the proxy, in its place among the replies), then prepared again under the same name.
      expect(await exchange(client, Buffer.concat([bind('s'), execute(), close('s'), parse('s', 'SELECT 2::text'), bind('s'), execute(), sync()]))).toEqual([
        '2',
        'D:1',
        'C',
        '3',
        '1',
        '2',
        'D:2',
        'C',
        'Z',
      ]);
      // After a Close the name is unknown, as PostgreSQL says.
      const gone = await exchange(client, Buffer.concat([close('s'), bind('s'), execute(), sync()]));
      expect(gone).toEqual(['3', 'E:26000:prepared statement "s" does not exist', 'Z']);
      // An error in the pipeline: what it skipped was never prepared (the next Parse of "late" is no duplicate).
      const failed = await exchange(client, Buffer.concat([parse('bad', 'SELECT nonsense'), parse('late', 'SELECT 5::text'), sync()]));
      expect(failed).toEqual(['E:42703:column "nonsense" does not exist', 'Z']);
      expect(await exchange(client, Buffer.concat([parse('late', 'SELECT 5::text'), bind('late'), execute(), sync()]))).toEqual(['1', '2', 'D:5', 'C', 'Z']);
    } finally {
      end(client);
    }
    expect(await forwardersOf(lines, database, 1)).toEqual(['native']);
  });

  it('evicts the least recently used statement at --max-prepared-statements 2 and prepares it again when used', async () => {
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(1, 2);
    const client = await rawSession(proxy.port, database);
    const count = () => exchange(client, query(`SELECT count(*)::text FROM pg_prepared_statements WHERE name LIKE 'tandem_%'`));
    try {
      for (const n of [1, 2, 3]) expect(await exchange(client, Buffer.concat([parse(`s${n}`, `SELECT ${n}::text`), bind(`s${n}`), execute(), sync()]))).toEqual(['1', '2', `D:${n}`, 'C', 'Z']);
      expect(await count()).toEqual(['T', 'D:2', 'C', 'Z']);
      // s1 was evicted (its CloseComplete and the ParseComplete of its new prepare are not the client's).
      for (const n of [1, 2, 3, 1]) expect(await exchange(client, Buffer.concat([bind(`s${n}`), execute(), sync()]))).toEqual(['2', `D:${n}`, 'C', 'Z']);
      expect(await count()).toEqual(['T', 'D:2', 'C', 'Z']);
      // The client still has its three, as SHOW CLIENTS says.
      const admin = await connectThrough(proxy.url('tandem'));
      try {
        const rows = (await admin.query('SHOW CLIENTS')).rows.filter((row: { database: string }) => row.database === database);
        expect(rows.map((row: { prepared_statements: number }) => row.prepared_statements)).toEqual([3]);
      } finally {
        await admin.end();
      }
    } finally {
      end(client);
    }
    expect(await forwardersOf(lines, database, 1)).toEqual(['native']);
  });

  it('hands a client with statements back to Node on a session SET, and it goes on using them', async () => {
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const client = await connectThrough(proxy.url(database));
    try {
      for (let i = 0; i < 3; i++) expect((await client.query({ name: 'plus', text: 'SELECT $1::int + 1 AS n', values: [i] })).rows[0].n).toBe(i + 1);
      await client.query('SET statement_timeout = 4321');
      // node-postgres does not prepare "plus" again: Node must know it.
      for (let i = 0; i < 3; i++) expect((await client.query({ name: 'plus', text: 'SELECT $1::int + 1 AS n', values: [i] })).rows[0].n).toBe(i + 1);
      expect((await client.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('4321ms');
    } finally {
      await client.end();
    }
    expect(await forwardersOf(lines, database, 1)).toEqual(['node']);
    // It named "plus" in the thread, which handed the statement over with the client.
    expect(lines.filter((line) => /named statements the native thread kept/.test(String(line.msg))).map((line) => line.statements)).toEqual([1]);
  });

  it('leaves DEALLOCATE ALL to Node, so that the thread prepares again what another client deallocated', async () => {
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(1);
    const owner = await rawSession(proxy.port, database);
    const other = await rawSession(proxy.port, database);
    try {
      expect(await exchange(owner, Buffer.concat([parse('s', 'SELECT 9::text'), bind('s'), execute(), sync()]))).toEqual(['1', '2', 'D:9', 'C', 'Z']);
      expect(await exchange(other, query('DEALLOCATE ALL'))).toEqual(['C', 'Z']);
      expect(await exchange(owner, Buffer.concat([bind('s'), execute(), sync()]))).toEqual(['2', 'D:9', 'C', 'Z']);
    } finally {
      end(owner);
      end(other);
    }
    // The DEALLOCATE ALL went to Node, and its client back to the thread once it was answered.
    expect(await forwardersOf(lines, database, 2)).toEqual(['native', 'native']);
    expect(lines.filter((line) => line.msg === 'pooled client back to the native forwarder between transactions')).toHaveLength(1);
  });

  it('gives a drained connection back to Node with what the thread prepared on it', async () => {
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(1);
    const sql = 'SELECT 7::text';
    const native = await rawSession(proxy.port, database);
    const inNode = await inNodeSession(proxy);
    try {
      expect(await exchange(native, Buffer.concat([parse('a', sql), bind('a'), execute(), sync()]))).toEqual(['1', '2', 'D:7', 'C', 'Z']);
      // A client in Node prepares the same statement on the same (only) connection, at once: the
      // thread gives the connection back when Node's own client waits for it.
      expect(await exchange(inNode, Buffer.concat([parse('b', sql), bind('b'), execute(), sync()]))).toEqual(['1', '2', 'D:7', 'C', 'Z']);
      // And back to the thread's client, which uses its statement on the connection Node used.
      expect(await exchange(native, Buffer.concat([bind('a'), execute(), sync()]))).toEqual(['2', 'D:7', 'C', 'Z']);
      const names = await exchange(inNode, query(`SELECT count(*)::text FROM pg_prepared_statements WHERE name LIKE 'tandem_%' AND statement = '${sql}'`));
      expect(names).toEqual(['T', 'D:1', 'C', 'Z']);
    } finally {
      end(native);
      end(inNode);
    }
    expect((await forwardersOf(lines, database, 2)).sort()).toEqual(['native', 'node']);
  });

  it('hands a client back to Node between a Flush and its Sync, on the connection and in the implicit transaction it had', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const client = await rawSession(proxy.port, database);
    const other = await rawSession(proxy.port, database);
    try {
      // Flushed, not synced: the thread answers, and the connection stays the client's until the Sync.
      const flushed = repliesUntil(client, (type) => type === 'C');
      client.write(Buffer.concat([parse('', "INSERT INTO users (id, email) VALUES (77, 'mid@example.com') RETURNING pg_backend_pid()::text"), bind(''), execute(), flush()]));
      const [parsed, bound, row, done] = await flushed;
      expect([parsed, bound, done]).toEqual(['1', '2', 'C']);
      const pid = row!.slice(2);
      // Meanwhile another client is served on the other connection, and does not see the row yet.
      const seen = await exchange(other, query(`SELECT pg_backend_pid()::text || ':' || count(*) FROM users WHERE id = 77`));
      expect(seen[1]).not.toBe(`D:${pid}:0`);
      expect(seen[1]).toMatch(/^D:\d+:0$/);
      // LISTEN is Node's to judge (it pins): the thread hands the client over before the Sync, with its connection.
      const rest = await exchange(client, Buffer.concat([parse('', 'LISTEN mid_request'), bind(''), execute(), parse('', 'SELECT pg_backend_pid()::text'), bind(''), execute(), sync()]));
      expect(rest).toEqual(['1', '2', 'C', '1', '2', `D:${pid}`, 'C', 'Z']);
      // One implicit transaction, committed at the Sync; then the client stays pinned to that connection.
      expect(await exchange(other, query('SELECT count(*)::text FROM users WHERE id = 77'))).toEqual(['T', 'D:1', 'C', 'Z']);
      expect(await exchange(client, query('SELECT pg_backend_pid()::text'))).toEqual(['T', `D:${pid}`, 'C', 'Z']);
    } finally {
      end(client);
      end(other);
    }
    expect((await forwardersOf(lines, database, 2)).sort()).toEqual(['native', 'node']);
  });

  it('answers COPY FROM STDIN pipelined between named statements before one Sync, preparing them again on another connection', async () => {
    await createUsersTable(db.url);
    const database = databaseOf(db.url);
    const { proxy, lines } = await proxyWithLog(2);
    const client = await rawSession(proxy.port, database);
    const holder = await rawSession(proxy.port, database);
    try {
      const first = await exchange(client, Buffer.concat([parse('n', 'SELECT count(*)::text || pg_backend_pid()::text FROM users'), bind('n'), execute(), sync()]));
      expect(first.slice(0, 2)).toEqual(['1', '2']);
      const firstPid = first[2]!.slice(3);
      // That connection is held: the pipeline goes out on the other one, which lacks "n".
      expect(await exchange(holder, query('BEGIN'))).toEqual(['C', 'Z']);
      const piped = await exchange(
        client,
        Buffer.concat([
          bind('n'), execute(),
          parse('', 'COPY users (id, email) FROM STDIN'), bind(''), execute(),
          copyData('81\tcopy1@example.com\n'), copyData('82\tcopy2@example.com\n'), copyDone(),
          bind('n'), execute(),
          sync(),
        ]),
      );
      expect(piped.slice(0, 1)).toEqual(['2']);
      const otherPid = piped[1]!.slice(3);
      expect(otherPid).not.toBe(firstPid);
      expect(piped).toEqual(['2', `D:2${otherPid}`, 'C', '1', '2', 'G', 'C', '2', `D:4${otherPid}`, 'C', 'Z']);
      expect(await exchange(holder, query('COMMIT'))).toEqual(['C', 'Z']);
      expect(await exchange(holder, query('SELECT string_agg(email, \',\' ORDER BY id) FROM users WHERE id > 80'))).toEqual(['T', 'D:copy1@example.com,copy2@example.com', 'C', 'Z']);
    } finally {
      end(client);
      end(holder);
    }
    // CopyData before its request's Sync is not the thread's to hold: it handed the client (and its
    // statement "n") to Node, which answered the whole pipeline.
    expect((await forwardersOf(lines, database, 2)).sort()).toEqual(['native', 'node']);
  });

});
