/**
 * Transaction-mode prepared statements, byte for byte: what reaches the server for each client
 * frame, and what the client gets back for each server reply. The real-server side is in
 * prepared-relay.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { FrameReader, ProtocolError, type TypedFrame } from '../../../src/proxy/protocol/frames.js';
import { encodeMessage } from '../../../src/proxy/protocol/messages.js';
import { PreparedStatements, ServerStatements, decodeStatementNames, encodeStatementNames, serverStatementName } from '../../../src/proxy/pool/prepared.js';

const cstring = (text: string) => Buffer.from(`${text}\0`);
const int16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const frame = (type: string, ...parts: Buffer[]) => encodeMessage(type.charCodeAt(0), Buffer.concat(parts));

const parse = (name: string, query: string, types: number[] = []) => frame('P', cstring(name), cstring(query), int16(types.length), ...types.map(int32));
const bind = (portal: string, statement: string, params: string[] = []) =>
  frame('B', cstring(portal), cstring(statement), int16(0), int16(params.length), ...params.flatMap((p) => [int32(Buffer.byteLength(p)), Buffer.from(p)]), int16(0));
const describeStatement = (name: string) => frame('D', Buffer.from('S'), cstring(name));
const describePortal = (name: string) => frame('D', Buffer.from('P'), cstring(name));
const closeStatement = (name: string) => frame('C', Buffer.from('S'), cstring(name));
const execute = (portal = '') => frame('E', cstring(portal), int32(0));
const sync = () => frame('S');
const query = (sql: string) => frame('Q', cstring(sql));

const parseComplete = () => frame('1');
const bindComplete = () => frame('2');
const closeComplete = () => frame('3');
const noData = () => frame('n');
const commandComplete = (tag: string) => frame('C', cstring(tag));
const dataRow = (value: string) => frame('D', int16(1), int32(value.length), Buffer.from(value));
const ready = (status = 'I') => frame('Z', Buffer.from(status));
const error = (code: string) => frame('E', cstring('SERROR'), cstring(`C${code}`), cstring('Mboom'), Buffer.from([0]));

/** The server name tandem gives a Parse of `query` with these parameter types. */
const nameOf = (query: string, types: number[] = []) => serverStatementName(Buffer.concat([cstring(query), int16(types.length), ...types.map(int32)]));

function frames(...buffers: Buffer[]): TypedFrame[] {
  const reader = new FrameReader(1 << 20);
  reader.push(Buffer.concat(buffers));
  const out: TypedFrame[] = [];
  for (let next = reader.nextTyped(); next; next = reader.nextTyped()) out.push(next);
  return out;
}

/** A client's statements on one server connection at a time, recording what each side receives. */
function pipe(server: ServerStatements) {
  const statements = new PreparedStatements();
  statements.attach(server);
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  const sink = { server: (b: Buffer) => toServer.push(b), client: (b: Buffer) => toClient.push(b) };
  return {
    statements,
    send(...buffers: Buffer[]) {
      for (const f of frames(...buffers)) statements.fromClient(f, sink);
      return Buffer.concat(toServer.splice(0));
    },
    reply(...buffers: Buffer[]) {
      for (const f of frames(...buffers)) statements.fromServer(f, sink);
      return Buffer.concat(toClient.splice(0));
    },
    /** Replies the proxy gave without the server. */
    answered() {
      return Buffer.concat(toClient.splice(0));
    },
    moveTo(next: ServerStatements) {
      statements.detach();
      statements.attach(next);
    },
  };
}

const Q = 'SELECT $1::int + 1';
const S1 = nameOf(Q, [23]);

describe('PreparedStatements', () => {
  it('passes unnamed statements and portals through untouched', () => {
    const client = pipe(new ServerStatements());
    const sent = Buffer.concat([parse('', Q), bind('', '', ['1']), describePortal(''), execute(), sync()]);
    expect(client.send(sent)).toEqual(sent);
    const replies = Buffer.concat([parseComplete(), bindComplete(), noData(), dataRow('2'), commandComplete('SELECT 1'), ready()]);
    expect(client.reply(replies)).toEqual(replies);
    expect(client.statements.idle).toBe(true);
  });

  it('renames a named statement after its text and types, in Parse, Bind and Describe', () => {
    const server = new ServerStatements();
    const client = pipe(server);
    expect(client.send(parse('s1', Q, [23]), describeStatement('s1'), bind('p', 's1', ['1']), execute('p'), sync())).toEqual(
      Buffer.concat([parse(S1, Q, [23]), describeStatement(S1), bind('p', S1, ['1']), execute('p'), sync()]),
    );
    const replies = Buffer.concat([parseComplete(), frame('t', int16(1), int32(23)), noData(), bindComplete(), dataRow('2'), commandComplete('SELECT 1'), ready()]);
    expect(client.reply(replies)).toEqual(replies);
    expect(server.list()).toEqual([S1]);
    // The same text with other parameter types is another statement.
    expect(nameOf(Q, [20])).not.toBe(S1);
    expect(S1).toMatch(/^tandem_[0-9a-f]{40}$/);
  });

  it('prepares a statement again on the next server connection, dropping the ParseComplete the client did not ask for', () => {
    const first = new ServerStatements();
    const second = new ServerStatements();
    const client = pipe(first);
    client.send(parse('s1', Q, [23]), sync());
    client.reply(parseComplete(), ready());
    client.moveTo(second);
    expect(client.send(bind('', 's1', ['5']), execute(), sync())).toEqual(Buffer.concat([parse(S1, Q, [23]), bind('', S1, ['5']), execute(), sync()]));
    expect(client.reply(parseComplete(), bindComplete(), dataRow('6'), commandComplete('SELECT 1'), ready())).toEqual(
      Buffer.concat([bindComplete(), dataRow('6'), commandComplete('SELECT 1'), ready()]),
    );
    // Back on the first connection, nothing is prepared again.
    client.moveTo(first);
    expect(client.send(bind('', 's1', ['7']), execute(), sync())).toEqual(Buffer.concat([bind('', S1, ['7']), execute(), sync()]));
  });

  it("answers a Parse itself when the server connection already holds another client's identical statement", () => {
    const server = new ServerStatements();
    const a = pipe(server);
    a.send(parse('a1', Q, [23]), sync());
    a.reply(parseComplete(), ready());
    const b = pipe(server);
    // Nothing outstanding: the ParseComplete goes out at once, and nothing reaches the server.
    expect(b.send(parse('b1', Q, [23]))).toEqual(Buffer.alloc(0));
    expect(b.answered()).toEqual(parseComplete());
    expect(b.send(bind('', 'b1', ['1']), execute(), sync())).toEqual(Buffer.concat([bind('', S1, ['1']), execute(), sync()]));
  });

  it('keeps replies in order through a pipeline: an answered ParseComplete waits for the replies before it', () => {
    const server = new ServerStatements();
    const a = pipe(server);
    a.send(parse('x', Q, [23]), sync());
    a.reply(parseComplete(), ready());
    const b = pipe(server);
    expect(b.send(parse('', 'SELECT 1'), bind('', ''), execute(), parse('y', Q, [23]), bind('', 'y', ['1']), execute(), sync())).toEqual(
      Buffer.concat([parse('', 'SELECT 1'), bind('', ''), execute(), bind('', S1, ['1']), execute(), sync()]),
    );
    expect(b.answered()).toEqual(Buffer.alloc(0));
    expect(b.reply(parseComplete(), bindComplete(), dataRow('1'), commandComplete('SELECT 1'))).toEqual(
      Buffer.concat([parseComplete(), bindComplete(), dataRow('1'), commandComplete('SELECT 1'), parseComplete()]),
    );
    expect(b.reply(bindComplete(), dataRow('2'), commandComplete('SELECT 1'), ready())).toEqual(
      Buffer.concat([bindComplete(), dataRow('2'), commandComplete('SELECT 1'), ready()]),
    );
  });

  it('answers Close of a named statement itself and keeps the server statement for other clients', () => {
    const server = new ServerStatements();
    const client = pipe(server);
    client.send(parse('s1', Q, [23]), sync());
    client.reply(parseComplete(), ready());
    expect(client.send(closeStatement('s1'), closeStatement('never-prepared'), sync())).toEqual(sync());
    expect(client.answered()).toEqual(Buffer.concat([closeComplete(), closeComplete()]));
    expect(client.reply(ready())).toEqual(ready());
    expect(client.statements.names).toEqual([]);
    expect(server.list()).toEqual([S1]);
    // A Bind of the closed name goes to the server as the client wrote it, which refuses it (26000) as PostgreSQL would.
    expect(client.send(bind('', 's1'), sync())).toEqual(Buffer.concat([bind('', 's1'), sync()]));
    expect(client.reply(error('26000'), ready())).toEqual(Buffer.concat([error('26000'), ready()]));
  });

  it('keeps names that are not ASCII apart, and reports them as the client wrote them', () => {
    const client = pipe(new ServerStatements());
    client.send(parse('größe', 'SELECT 1'), parse('grösse', 'SELECT 2'), sync());
    client.reply(parseComplete(), parseComplete(), ready());
    expect(client.statements.names).toEqual(['größe', 'grösse']);
    expect(client.send(bind('', 'größe'), sync())).toEqual(Buffer.concat([bind('', nameOf('SELECT 1')), sync()]));
  });

  it('evicts the least recently used statement with a Close whose reply the client never sees', () => {
    const server = new ServerStatements(2);
    const client = pipe(server);
    client.send(parse('a', 'SELECT 1'), parse('b', 'SELECT 2'), sync());
    client.reply(parseComplete(), parseComplete(), ready());
    client.send(bind('', 'a'), execute(), sync()); // a is now more recent than b
    client.reply(bindComplete(), commandComplete('SELECT 1'), ready());
    expect(client.send(parse('c', 'SELECT 3'), sync())).toEqual(Buffer.concat([frame('C', Buffer.from('S'), cstring(nameOf('SELECT 2'))), parse(nameOf('SELECT 3'), 'SELECT 3'), sync()]));
    expect(client.reply(closeComplete(), parseComplete(), ready())).toEqual(Buffer.concat([parseComplete(), ready()]));
    expect(server.list()).toEqual([nameOf('SELECT 1'), nameOf('SELECT 3')]);
    // b is still the client's: it is prepared again, evicting a.
    expect(client.send(bind('', 'b'), execute(), sync())).toEqual(
      Buffer.concat([frame('C', Buffer.from('S'), cstring(nameOf('SELECT 1'))), parse(nameOf('SELECT 2'), 'SELECT 2'), bind('', nameOf('SELECT 2')), execute(), sync()]),
    );
    expect(client.reply(closeComplete(), parseComplete(), bindComplete(), commandComplete('SELECT 1'), ready())).toEqual(
      Buffer.concat([bindComplete(), commandComplete('SELECT 1'), ready()]),
    );
  });

  it('forgets a statement whose Parse failed, and everything the server skipped up to the Sync', () => {
    const server = new ServerStatements();
    const client = pipe(server);
    client.send(parse('bad', 'SELEC 1'), bind('', 'bad'), execute(), parse('later', 'SELECT 2'), sync());
    expect(client.reply(error('42601'), ready())).toEqual(Buffer.concat([error('42601'), ready()]));
    expect(client.statements.names).toEqual([]);
    expect(server.list()).toEqual([]);
    expect(client.statements.idle).toBe(true);
    // The names are free again.
    expect(client.send(parse('later', 'SELECT 2'), sync())).toEqual(Buffer.concat([parse(nameOf('SELECT 2'), 'SELECT 2'), sync()]));
  });

  it('keeps an evicted statement when the server skipped its Close, and ignores what the client sends after an error until Sync', () => {
    const server = new ServerStatements(1);
    const client = pipe(server);
    client.send(parse('a', 'SELECT 1'), sync());
    client.reply(parseComplete(), ready());
    // The Bind of an unknown name fails before the Close and Parse that make room for b.
    client.send(bind('', 'nope'), parse('b', 'SELECT 2'), bind('', 'b'), execute());
    expect(client.reply(error('26000'))).toEqual(error('26000'));
    expect(server.list()).toEqual([nameOf('SELECT 1')]);
    expect(client.statements.names).toEqual(['a']);
    // Sent after the error was seen and before the Sync: passed on as is, and the server ignores it.
    const ignored = Buffer.concat([parse('c', 'SELECT 3'), closeStatement('a')]);
    expect(client.send(ignored)).toEqual(ignored);
    expect(client.statements.names).toEqual(['a']);
    expect(client.send(sync())).toEqual(sync());
    expect(client.reply(ready())).toEqual(ready());
    expect(client.statements.idle).toBe(true);
  });

  it("answers a Parse of a name in use with PostgreSQL's error, and skips to the Sync", () => {
    const client = pipe(new ServerStatements());
    client.send(parse('s', 'SELECT 1'), sync());
    client.reply(parseComplete(), ready());
    // The server gets a Parse that fails the same way, so that it skips to the Sync too.
    expect(client.send(parse('s', 'SELECT 2'), bind('', 's'), execute(), sync())).toEqual(
      Buffer.concat([parse(nameOf('SELECT 1'), 'SELECT 1'), bind('', nameOf('SELECT 1')), execute(), sync()]),
    );
    const answered = frames(client.reply(error('42P05'), ready()));
    expect(answered.map((f) => String.fromCharCode(f.type))).toEqual(['E', 'Z']);
    expect(answered[0]!.body.toString()).toContain('prepared statement "s" already exists');
    expect(client.statements.names).toEqual(['s']);
  });

  it('follows simple queries, whose RowDescription and errors do not end a Describe or skip to a Sync', () => {
    const client = pipe(new ServerStatements());
    expect(client.send(query('SELECT 1; SELECT x'))).toEqual(query('SELECT 1; SELECT x'));
    const replies = Buffer.concat([frame('T', int16(0)), dataRow('1'), commandComplete('SELECT 1'), error('42703'), ready()]);
    expect(client.reply(replies)).toEqual(replies);
    expect(client.statements.idle).toBe(true);
  });

  it("adopts a client's statements from the native thread and a connection's names, oldest first", () => {
    // As the thread encodes them (forwarder.c, client_export): name NUL, uint32 length, the Parse body after the name.
    const body = Buffer.concat([cstring(Q), int16(1), int32(23)]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(body.length);
    const connection = new ServerStatements(3);
    connection.replace(decodeStatementNames(encodeStatementNames(['tandem_old', S1])));
    expect(connection.list()).toEqual(['tandem_old', S1]);
    const statements = new PreparedStatements();
    statements.adopt(Buffer.concat([cstring('s1'), length, body]));
    expect(statements.names).toEqual(['s1']);
    statements.attach(connection);
    const sent: Buffer[] = [];
    statements.fromClient(frames(bind('', 's1', ['5']))[0]!, { server: (b) => sent.push(b), client: () => {} });
    // The connection holds it: a Bind under the server name, nothing prepared again.
    expect(Buffer.concat(sent)).toEqual(bind('', S1, ['5']));
    expect(connection.list()).toEqual(['tandem_old', S1]);
  });

  it('refuses to move or release a client with replies outstanding, and reports a server out of step', () => {
    const first = new ServerStatements();
    const client = pipe(first);
    client.send(parse('s', 'SELECT 1'), sync());
    expect(client.statements.idle).toBe(false);
    expect(() => client.moveTo(new ServerStatements())).toThrow(/outstanding/);
    expect(() => client.reply(bindComplete())).toThrow(ProtocolError);
  });
});
