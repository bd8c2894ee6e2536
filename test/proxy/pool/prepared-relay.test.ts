/**
 * Transaction-mode prepared statements against a real PostgreSQL and real clients. A small relay in
 * the test stands where the pooling session will: it answers the client's startup, lends the client
 * a server connection per transaction from a FIFO list (so consecutive transactions land on different
 * connections), and runs every frame through PreparedStatements. The clients are node-postgres with
 * named queries and postgres.js with its default prepared statements; at the end each server
 * connection's pg_prepared_statements must match what the bookkeeping believes.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { usePostgres } from '../../support/harness.js';
import { FrameReader, type TypedFrame } from '../../../src/proxy/protocol/frames.js';
import { encodeMessage, MessageType, parseStartupPacket } from '../../../src/proxy/protocol/messages.js';
import { PreparedStatements, ServerStatements } from '../../../src/proxy/pool/prepared.js';
import { RawServer } from './support.js';

const db = usePostgres();

interface Relay {
  url: string;
  servers: RawServer[];
  statementsOn: Map<RawServer, ServerStatements>;
  /** Transactions that ran on another server connection than the client's previous one. */
  hops: number;
  /** Close frames sent to a server: the clients here never close statements, so these are evictions. */
  closes: number;
  close(): Promise<void>;
}

const relays: Relay[] = [];
afterEach(async () => {
  await Promise.all(relays.splice(0).map((relay) => relay.close()));
});

async function startRelay(serverCount: number, maxPreparedStatements?: number): Promise<Relay> {
  const servers = await Promise.all(Array.from({ length: serverCount }, () => RawServer.open(db.url)));
  const statementsOn = new Map(servers.map((server) => [server, new ServerStatements(maxPreparedStatements)]));
  const free = [...servers];
  const waiting: Array<() => void> = [];
  const sockets = new Set<net.Socket>();

  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const reader = new FrameReader(1 << 30);
    const statements = new PreparedStatements();
    let started = false;
    let server: RawServer | undefined;
    let previous: RawServer | undefined;
    let backlog: TypedFrame[] | undefined;
    const sink = {
      server: (frame: Buffer) => {
        if (frame[0] === 0x43 /* Close */) relay.closes++;
        server!.send(frame);
      },
      client: (frame: Buffer) => socket.write(frame),
    };

    const release = () => {
      statements.detach();
      server!.onFrame = undefined;
      free.push(server!);
      previous = server;
      server = undefined;
      waiting.shift()?.();
    };
    const fromServer = (frame: TypedFrame) => {
      statements.fromServer(frame, sink);
      if (frame.type === MessageType.ReadyForQuery && server!.transactionStatus === 'I' && statements.idle) release();
    };
    const lease = () => {
      server = free.shift()!;
      if (previous && previous !== server) relay.hops++;
      statements.attach(statementsOn.get(server)!);
      server.onFrame = fromServer;
      const queued = backlog!;
      backlog = undefined;
      for (const frame of queued) fromClient(frame);
    };
    const fromClient = (frame: TypedFrame) => {
      if (frame.type === MessageType.Terminate) {
        socket.end();
        return;
      }
      if (backlog) {
        backlog.push(frame);
        return;
      }
      if (!server) {
        backlog = [frame];
        if (free.length > 0) lease();
        else waiting.push(lease);
        return;
      }
      statements.fromClient(frame, sink);
    };

    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      while (!started) {
        const body = reader.nextUntyped();
        if (!body) return;
        const packet = parseStartupPacket(body);
        if (packet.kind === 'ssl' || packet.kind === 'gssenc') {
          socket.write('N');
          continue;
        }
        started = true;
        reader.setMaxLength(1 << 30);
        const backendKey = Buffer.alloc(8);
        socket.write(
          Buffer.concat([
            encodeMessage(MessageType.Authentication, Buffer.alloc(4)),
            ...servers[0]!.parameterStatus,
            encodeMessage(MessageType.BackendKeyData, backendKey),
            encodeMessage(MessageType.ReadyForQuery, Buffer.from('I')),
          ]),
        );
      }
      for (let frame = reader.nextTyped(); frame; frame = reader.nextTyped()) fromClient(frame);
    });
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as net.AddressInfo).port;
  const target = new URL(db.url);
  const relay: Relay = {
    url: `postgres://${target.username}@127.0.0.1:${port}${target.pathname}`,
    servers,
    statementsOn,
    hops: 0,
    closes: 0,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
      for (const server of servers) server.close();
    },
  };
  relays.push(relay);
  return relay;
}

/** What each server connection really holds must be what the bookkeeping says. */
async function expectBookkeepingMatchesServers(relay: Relay): Promise<void> {
  for (const server of relay.servers) {
    const real = await server.query(`SELECT name FROM pg_catalog.pg_prepared_statements ORDER BY name`);
    expect(real).toEqual(relay.statementsOn.get(server)!.list().sort());
  }
}

async function pgClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

describe('prepared statements across server connections', () => {
  it('node-postgres named queries give right results while their transactions hop between two server connections', async () => {
    const relay = await startRelay(2);
    const client = await pgClient(relay.url);
    const pids = new Set<number>();
    for (let i = 0; i < 12; i++) {
      const result = await client.query({ name: 'add', text: 'SELECT $1::int + 1 AS n, pg_backend_pid() AS pid', values: [i] });
      expect(result.rows[0].n).toBe(i + 1);
      pids.add(result.rows[0].pid);
      if (i % 3 !== 0) continue;
      const other = await client.query({ name: 'echo', text: 'SELECT $1::text AS t', values: [`v${i}`] });
      expect(other.rows).toEqual([{ t: `v${i}` }]);
    }
    expect(pids.size).toBe(2);
    expect(relay.hops).toBeGreaterThan(8);

    // Inside a transaction the connection stays.
    await client.query('BEGIN');
    const first = await client.query({ name: 'add', text: 'SELECT $1::int + 1 AS n, pg_backend_pid() AS pid', values: [1] });
    const second = await client.query({ name: 'add', text: 'SELECT $1::int + 1 AS n, pg_backend_pid() AS pid', values: [2] });
    await client.query('COMMIT');
    expect(second.rows[0].pid).toBe(first.rows[0].pid);

    // An error at execution, then at parse: the statements and the connections stay usable.
    await expect(client.query({ name: 'div', text: 'SELECT 10 / $1::int AS q', values: [0] })).rejects.toMatchObject({ code: '22012' });
    for (const divisor of [5, 2, 1]) {
      const result = await client.query({ name: 'div', text: 'SELECT 10 / $1::int AS q', values: [divisor] });
      expect(result.rows).toEqual([{ q: 10 / divisor }]);
    }
    await expect(client.query({ name: 'bad', text: 'SELEC $1::int', values: [1] })).rejects.toMatchObject({ code: '42601' });
    expect((await client.query({ name: 'add', text: 'SELECT $1::int + 1 AS n, pg_backend_pid() AS pid', values: [41] })).rows[0].n).toBe(42);
    await client.end();
    await expectBookkeepingMatchesServers(relay);
  });

  it('two clients share server statements and stay right when max_prepared_statements evicts', async () => {
    const relay = await startRelay(2, 2);
    const clients = await Promise.all([pgClient(relay.url), pgClient(relay.url)]);
    const statements = [
      { name: 'plus', text: 'SELECT $1::int + 100 AS v', expected: (i: number) => i + 100 },
      { name: 'times', text: 'SELECT $1::int * 3 AS v', expected: (i: number) => i * 3 },
      { name: 'minus', text: 'SELECT $1::int - 7 AS v', expected: (i: number) => i - 7 },
    ];
    await Promise.all(
      clients.map(async (client, c) => {
        for (let i = 0; i < 30; i++) {
          const statement = statements[(i + c) % statements.length]!;
          const result = await client.query({ name: statement.name, text: statement.text, values: [i] });
          expect(result.rows).toEqual([{ v: statement.expected(i) }]);
        }
      }),
    );
    await Promise.all(clients.map((client) => client.end()));
    expect(relay.closes).toBeGreaterThan(0);
    for (const server of relay.servers) expect(relay.statementsOn.get(server)!.size).toBeLessThanOrEqual(2);
    await expectBookkeepingMatchesServers(relay);
  });

  it("postgres.js's default prepared statements work pipelined and sequential, with an error in the pipeline", async () => {
    const relay = await startRelay(2);
    const sql = postgres(relay.url, { max: 1, onnotice: () => {} });
    try {
      for (let i = 0; i < 10; i++) {
        const [row] = await sql`SELECT ${i}::int * 2 AS doubled, ${`x${i}`}::text AS label`;
        expect(row).toEqual({ doubled: i * 2, label: `x${i}` });
      }
      const pipelined = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          i === 7 ? sql`SELECT 1 / ${0}::int AS q` : i === 12 ? sql`SELEC ${i}::int` : sql`SELECT ${i}::int + 1 AS n`,
        ),
      );
      pipelined.forEach((outcome, i) => {
        if (i === 7) expect(outcome).toMatchObject({ status: 'rejected', reason: { code: '22012' } });
        else if (i === 12) expect(outcome).toMatchObject({ status: 'rejected', reason: { code: '42601' } });
        else expect(outcome).toEqual({ status: 'fulfilled', value: [{ n: i + 1 }] });
      });
      const rows = await sql.begin(async (tx) => {
        const [a] = await tx`SELECT pg_backend_pid() AS pid, ${1}::int AS one`;
        const [b] = await tx`SELECT pg_backend_pid() AS pid, ${1}::int AS one`;
        return [a, b];
      });
      expect(rows[0]!.pid).toBe(rows[1]!.pid);
      for (let i = 0; i < 6; i++) expect(await sql`SELECT ${i}::int * 2 AS doubled, ${'y'}::text AS label`).toEqual([{ doubled: i * 2, label: 'y' }]);
    } finally {
      await sql.end();
    }
    expect(relay.hops).toBeGreaterThan(5);
    await expectBookkeepingMatchesServers(relay);
  });
});
