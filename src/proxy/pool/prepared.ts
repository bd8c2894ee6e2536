/**
 * Protocol-level prepared statements in transaction mode. A client names its statements once
 * (Parse "s1") and uses them in later transactions, which may run on another server connection
 * that has never seen "s1". So each client statement gets a server-side name derived from its query
 * text and parameter types (identical statements of different clients share one server prepare),
 * every server connection knows which names it holds (an LRU bounded by max_prepared_statements),
 * and the client's frames are rewritten on the way in: names swapped, a Parse injected before a
 * statement is used where it is missing, a Close sent for an evicted one. On the way out, the
 * replies to what the proxy injected are dropped and the replies to what it answered itself
 * (a Parse of a statement the server already holds, a Close) are inserted, so the client sees
 * exactly the replies it asked for, in order, however deep its pipeline.
 *
 * Pure bookkeeping over frames, like protocol/: no sockets. Unnamed statements and portals pass
 * through untouched.
 */
import { createHash } from 'node:crypto';
import { ProtocolError, type TypedFrame } from '../protocol/frames.js';
import { MessageType, encodeErrorResponse, encodeMessage } from '../protocol/messages.js';

/** PgBouncer's default for max_prepared_statements. */
export const DEFAULT_MAX_PREPARED_STATEMENTS = 200;

/** Where rewritten and injected frames go. */
export interface FrameSink {
  server(frame: Buffer): void;
  client(frame: Buffer): void;
}

/** The named statements prepared on one server connection, least recently used first. */
export class ServerStatements {
  private readonly names = new Set<string>();

  constructor(readonly capacity = DEFAULT_MAX_PREPARED_STATEMENTS) {
    if (!(capacity >= 1)) throw new RangeError(`max_prepared_statements must be at least 1, got ${capacity}`);
  }

  get size(): number {
    return this.names.size;
  }

  has(name: string): boolean {
    return this.names.has(name);
  }

  private mostRecent: string | undefined;

  /** Marks `name` as the most recently used (a Set keeps insertion order). */
  touch(name: string): void {
    // The common case, one statement used over and over, costs no reordering.
    if (name === this.mostRecent) return;
    this.names.delete(name);
    this.names.add(name);
    this.mostRecent = name;
  }

  add(name: string): void {
    this.names.add(name);
    this.mostRecent = undefined;
  }

  delete(name: string): void {
    this.names.delete(name);
    if (name === this.mostRecent) this.mostRecent = undefined;
  }

  /** After `DISCARD ALL` or `DEALLOCATE ALL` on the connection: the server holds none any more. */
  clear(): void {
    this.names.clear();
    this.mostRecent = undefined;
  }

  leastRecentlyUsed(): string | undefined {
    return this.names.values().next().value;
  }

  /** Oldest first. */
  list(): string[] {
    return [...this.names];
  }

  /** What the native thread says the connection holds, oldest first, after it used the connection. */
  replace(names: Iterable<string>): void {
    this.clear();
    for (const name of names) this.add(name);
  }
}

/** Server names as the native thread takes and gives them (with a connection): NUL-terminated, oldest first. */
export function encodeStatementNames(names: string[]): Buffer {
  return Buffer.from(names.map((name) => `${name}\0`).join(''), 'latin1');
}

export function decodeStatementNames(bytes: Buffer): string[] {
  const names: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf(0, at);
    if (end < 0) break;
    names.push(bytes.toString('latin1', at, end));
    at = end + 1;
  }
  return names;
}

/** One named statement of a client. */
interface ClientStatement {
  readonly serverName: string;
  /** The server name and its terminator, ready to be copied into rewritten frames. */
  readonly serverNameBytes: Buffer;
  /** The client's Parse under the server name, injected wherever the statement is missing. */
  readonly parse: Buffer;
}

/** Server names stay well under NAMEDATALEN (64) and cannot clash with what clients usually pick. */
export const SERVER_NAME_PREFIX = 'tandem_';

/** The server-side name for a Parse body's query text and parameter types (the bytes after the name). */
export function serverStatementName(queryAndTypes: Buffer): string {
  return SERVER_NAME_PREFIX + createHash('sha1').update(queryAndTypes).digest('hex');
}

const STATEMENT = 0x53; // 'S' in Describe and Close

/** What each reply-producing message sent to the server (or answered by the proxy) waits for. */
const enum Reply {
  /** The client's own Parse: its ParseComplete goes to the client. */
  Parse,
  /** A Parse the proxy injected: its ParseComplete is dropped. */
  InjectedParse,
  /** A client Parse of a statement the server holds: the proxy answers ParseComplete itself. */
  AnsweredParse,
  /** A client Close of a named statement: answered by the proxy, the statement stays for others. */
  AnsweredClose,
  /**
   * A Parse of a name the client already uses: the server gets a Parse that fails the same way
   * (so that it skips to the Sync as PostgreSQL would), and the client gets the error with its name.
   */
  DuplicateParse,
  Bind,
  DescribeStatement,
  DescribePortal,
  Execute,
  /** The client's Close of a portal or of the unnamed statement. */
  Close,
  /** A Close of an evicted statement, injected: its CloseComplete is dropped. */
  InjectedClose,
  Sync,
  /** A simple Query or a FunctionCall: everything until ReadyForQuery belongs to it. */
  Query,
}

const PARSE_COMPLETE = encodeMessage(MessageType.ParseComplete, Buffer.alloc(0));
const CLOSE_COMPLETE = encodeMessage(MessageType.CloseComplete, Buffer.alloc(0));

/**
 * One client's named statements, and the replies its frames wait for on the server connection it
 * holds. Lives as long as the client's session; `attach` it to each server connection the client
 * gets, `detach` when the connection goes back to the pool (only when `idle`).
 */
export class PreparedStatements {
  private readonly statements = new Map<string, ClientStatement>();
  private server: ServerStatements | undefined;

  // The replies still expected, in order: a ring of parallel arrays, so that ordinary traffic
  // (Bind/Execute/Sync) allocates nothing per message.
  private kinds = new Uint8Array(64);
  private serverNames: Array<string | undefined> = new Array(64);
  private clientNames: Array<string | undefined> = new Array(64);
  private payloads: Array<ClientStatement | Buffer | undefined> = new Array(64);
  private head = 0;
  private count = 0;
  /**
   * The server reported an error in an extended-protocol pipeline and the Sync that ends it has not
   * been sent yet: the server discards everything until that Sync, and so must the bookkeeping.
   */
  private skipping = false;

  /**
   * Takes over the statements the native thread kept for this client (a hand-back): each its name,
   * NUL, a big-endian uint32 length, and the Parse body after the name (native/forwarder.c,
   * client_export).
   */
  adopt(encoded: Buffer): void {
    let at = 0;
    while (at < encoded.length) {
      const nameEnd = terminator(encoded, at);
      const length = encoded.readUInt32BE(nameEnd + 1);
      const rest = encoded.subarray(nameEnd + 5, nameEnd + 5 + length);
      this.statements.set(encoded.toString('latin1', at, nameEnd), clientStatement(rest));
      at = nameEnd + 5 + length;
    }
  }

  /** Statements this client has named, by the client's name. */
  get names(): string[] {
    // Keys are the names' bytes as latin1 (cheap to decode on every Bind); this is for people.
    return [...this.statements.keys()].map((key) => Buffer.from(key, 'latin1').toString('utf8'));
  }

  /** No reply outstanding: the server connection may go back to the pool. */
  get idle(): boolean {
    return this.count === 0 && !this.skipping;
  }

  attach(server: ServerStatements): void {
    if (!this.idle) throw new Error('a client with replies outstanding cannot move to another server connection');
    this.server = server;
  }

  detach(): void {
    if (!this.idle) throw new Error('a server connection with replies outstanding cannot go back to the pool');
    this.server = undefined;
  }

  /** Rewrites one client frame for the attached server connection. */
  fromClient(message: TypedFrame, sink: FrameSink): void {
    const type = message.type;
    if (this.skipping && type !== MessageType.Sync) {
      // The server ignores it; so does the bookkeeping.
      sink.server(message.frame);
      return;
    }
    switch (type) {
      case MessageType.Parse:
        return this.parse(message, sink);
      case MessageType.Bind:
        return this.bind(message, sink);
      case MessageType.Describe:
        return this.describe(message, sink);
      case MessageType.Close:
        return this.close(message, sink);
      case MessageType.Execute:
        this.expect(Reply.Execute, sink);
        break;
      case MessageType.Sync:
        this.skipping = false;
        this.expect(Reply.Sync, sink);
        break;
      case MessageType.Query:
      case MessageType.FunctionCall:
        this.expect(Reply.Query, sink);
        break;
    }
    sink.server(message.frame);
  }

  /** Passes one server frame to the client, dropping or adding replies as the rewriting requires. */
  fromServer(message: TypedFrame, sink: FrameSink): void {
    const type = message.type;
    const head = this.count > 0 ? (this.kinds[this.head] as Reply) : undefined;
    switch (type) {
      case MessageType.ParseComplete:
        if (head !== Reply.Parse && head !== Reply.InjectedParse) throw unexpected('ParseComplete', head);
        if (head === Reply.Parse) sink.client(message.frame);
        this.pop();
        break;
      case MessageType.BindComplete:
        if (head !== Reply.Bind) throw unexpected('BindComplete', head);
        sink.client(message.frame);
        this.pop();
        break;
      case MessageType.CloseComplete:
        if (head !== Reply.Close && head !== Reply.InjectedClose) throw unexpected('CloseComplete', head);
        if (head === Reply.Close) sink.client(message.frame);
        this.pop();
        break;
      case MessageType.RowDescription:
      case MessageType.NoData:
        sink.client(message.frame);
        // Also part of a simple query's results; it completes only a Describe.
        if (head === Reply.DescribeStatement || head === Reply.DescribePortal) this.pop();
        break;
      case MessageType.CommandComplete:
      case MessageType.EmptyQueryResponse:
      case MessageType.PortalSuspended:
        sink.client(message.frame);
        if (head === Reply.Execute) this.pop();
        break;
      case MessageType.ReadyForQuery:
        if (head !== Reply.Sync && head !== Reply.Query) throw unexpected('ReadyForQuery', head);
        sink.client(message.frame);
        this.pop();
        break;
      case MessageType.ErrorResponse:
        sink.client(head === Reply.DuplicateParse ? (this.payloads[this.head] as Buffer) : message.frame);
        // A simple query's error still ends at its ReadyForQuery; an extended-protocol error makes
        // the server skip to the next Sync. (With nothing outstanding it is the server going away.)
        if (head !== undefined && head !== Reply.Query && head !== Reply.Sync) this.skipToSync();
        return;
      default:
        // ParameterDescription, DataRow, notices, notifications, ParameterStatus, COPY…
        sink.client(message.frame);
        return;
    }
    this.answerWhatIsDue(sink);
  }

  private parse(message: TypedFrame, sink: FrameSink): void {
    const body = message.body;
    const nameEnd = terminator(body, 0);
    if (nameEnd === 0) {
      return this.passOn(Reply.Parse, message, sink);
    }
    const name = body.toString('latin1', 0, nameEnd);
    const existing = this.statements.get(name);
    if (existing) {
      this.ensurePrepared(existing, sink);
      const error = encodeErrorResponse({ severity: 'ERROR', code: '42P05', message: `prepared statement "${body.toString('utf8', 0, nameEnd)}" already exists` });
      this.expect(Reply.DuplicateParse, sink, undefined, undefined, error);
      sink.server(existing.parse);
      return;
    }
    const statement = clientStatement(body.subarray(nameEnd + 1));
    const serverName = statement.serverName;
    this.statements.set(name, statement);
    const server = this.attached();
    if (server.has(serverName)) {
      server.touch(serverName);
      this.expect(Reply.AnsweredParse, sink, serverName, name, statement);
    } else {
      this.prepareOnServer(statement, Reply.Parse, name, sink);
    }
  }

  private bind(message: TypedFrame, sink: FrameSink): void {
    const body = message.body;
    const portalEnd = terminator(body, 0);
    const nameEnd = terminator(body, portalEnd + 1);
    const statement = nameEnd > portalEnd + 1 ? this.statements.get(body.toString('latin1', portalEnd + 1, nameEnd)) : undefined;
    if (!statement) {
      // Unnamed, or a name the client never prepared: the server says what PostgreSQL says (26000).
      return this.passOn(Reply.Bind, message, sink);
    }
    this.ensurePrepared(statement, sink);
    const rest = body.subarray(nameEnd + 1);
    const names = statement.serverNameBytes;
    const length = 4 + portalEnd + 1 + names.length + rest.length;
    const frame = Buffer.allocUnsafe(1 + length);
    frame[0] = MessageType.Bind;
    frame.writeInt32BE(length, 1);
    copyBytes(body, 0, portalEnd + 1, frame, 5);
    copyBytes(names, 0, names.length, frame, 5 + portalEnd + 1);
    copyBytes(rest, 0, rest.length, frame, 5 + portalEnd + 1 + names.length);
    this.expect(Reply.Bind, sink);
    sink.server(frame);
  }

  private describe(message: TypedFrame, sink: FrameSink): void {
    const body = message.body;
    if (body[0] !== STATEMENT) {
      return this.passOn(Reply.DescribePortal, message, sink);
    }
    const nameEnd = terminator(body, 1);
    const statement = nameEnd > 1 ? this.statements.get(body.toString('latin1', 1, nameEnd)) : undefined;
    if (!statement) {
      return this.passOn(Reply.DescribeStatement, message, sink);
    }
    this.ensurePrepared(statement, sink);
    this.expect(Reply.DescribeStatement, sink);
    sink.server(encodeMessage(MessageType.Describe, Buffer.concat([Buffer.of(STATEMENT), statement.serverNameBytes])));
  }

  private close(message: TypedFrame, sink: FrameSink): void {
    const body = message.body;
    const nameEnd = body[0] === STATEMENT ? terminator(body, 1) : 1;
    if (nameEnd === 1) {
      return this.passOn(Reply.Close, message, sink);
    }
    // The server's statement may serve other clients: it stays until the LRU evicts it. Closing a
    // name that does not exist is no error in PostgreSQL either.
    const name = body.toString('latin1', 1, nameEnd);
    const statement = this.statements.get(name);
    this.statements.delete(name);
    this.expect(Reply.AnsweredClose, sink, undefined, name, statement);
  }

  /** Sends the client's frame as it is, waiting for its reply. */
  private passOn(reply: Reply, message: TypedFrame, sink: FrameSink): void {
    this.expect(reply, sink);
    sink.server(message.frame);
  }

  private ensurePrepared(statement: ClientStatement, sink: FrameSink): void {
    const server = this.attached();
    if (server.has(statement.serverName)) server.touch(statement.serverName);
    else this.prepareOnServer(statement, Reply.InjectedParse, undefined, sink);
  }

  private prepareOnServer(statement: ClientStatement, reply: Reply.Parse | Reply.InjectedParse, clientName: string | undefined, sink: FrameSink): void {
    const server = this.attached();
    while (server.size >= server.capacity) {
      const evicted = server.leastRecentlyUsed()!;
      server.delete(evicted);
      this.expect(Reply.InjectedClose, sink, evicted);
      sink.server(encodeMessage(MessageType.Close, Buffer.from(`S${evicted}\0`, 'latin1')));
    }
    // Counted as prepared from now on, so the rest of the pipeline does not prepare it again; an
    // error or a skip takes it back out (`undo`).
    server.add(statement.serverName);
    this.expect(reply, sink, statement.serverName, clientName, statement);
    sink.server(statement.parse);
  }

  private attached(): ServerStatements {
    if (!this.server) throw new Error('no server connection attached for prepared statements');
    return this.server;
  }

  /** Queues the reply a message waits for; a reply the proxy gives itself goes out at once if nothing precedes it. */
  private expect(kind: Reply, sink: FrameSink, serverName?: string, clientName?: string, payload?: ClientStatement | Buffer): void {
    if (this.count === this.kinds.length) this.grow();
    const slot = (this.head + this.count) & (this.kinds.length - 1);
    this.kinds[slot] = kind;
    this.serverNames[slot] = serverName;
    this.clientNames[slot] = clientName;
    this.payloads[slot] = payload;
    this.count++;
    if (this.count === 1) this.answerWhatIsDue(sink);
  }

  private pop(): void {
    const slot = this.head;
    this.serverNames[slot] = undefined;
    this.clientNames[slot] = undefined;
    this.payloads[slot] = undefined;
    this.head = (slot + 1) & (this.kinds.length - 1);
    this.count--;
  }

  /** Sends the replies the proxy gives itself once everything before them has been answered. */
  private answerWhatIsDue(sink: FrameSink): void {
    while (this.count > 0) {
      const kind = this.kinds[this.head] as Reply;
      if (kind === Reply.AnsweredParse) sink.client(PARSE_COMPLETE);
      else if (kind === Reply.AnsweredClose) sink.client(CLOSE_COMPLETE);
      else return;
      this.pop();
    }
  }

  /** The failed message and everything after it up to the Sync never happened. */
  private skipToSync(): void {
    while (this.count > 0 && this.kinds[this.head] !== Reply.Sync) {
      this.undo(this.head);
      this.pop();
    }
    if (this.count === 0) this.skipping = true;
  }

  private undo(slot: number): void {
    const serverName = this.serverNames[slot];
    const clientName = this.clientNames[slot];
    const payload = this.payloads[slot] as ClientStatement | undefined;
    switch (this.kinds[slot] as Reply) {
      case Reply.Parse:
      case Reply.InjectedParse:
        this.server?.delete(serverName!);
        if (clientName !== undefined && this.statements.get(clientName) === payload) this.statements.delete(clientName);
        break;
      case Reply.AnsweredParse:
        if (this.statements.get(clientName!) === payload) this.statements.delete(clientName!);
        break;
      case Reply.AnsweredClose:
        if (payload && !this.statements.has(clientName!)) this.statements.set(clientName!, payload);
        break;
      case Reply.InjectedClose:
        // The server skipped the Close: the statement is still there.
        this.server?.add(serverName!);
        break;
    }
  }

  private grow(): void {
    const size = this.kinds.length;
    const kinds = new Uint8Array(size * 2);
    const serverNames: Array<string | undefined> = new Array(size * 2);
    const clientNames: Array<string | undefined> = new Array(size * 2);
    const payloads: Array<ClientStatement | Buffer | undefined> = new Array(size * 2);
    for (let i = 0; i < this.count; i++) {
      const from = (this.head + i) & (size - 1);
      kinds[i] = this.kinds[from]!;
      serverNames[i] = this.serverNames[from];
      clientNames[i] = this.clientNames[from];
      payloads[i] = this.payloads[from];
    }
    this.kinds = kinds;
    this.serverNames = serverNames;
    this.clientNames = clientNames;
    this.payloads = payloads;
    this.head = 0;
  }
}

/** A client statement from its Parse body after the name (query text, its NUL, parameter types). */
function clientStatement(rest: Buffer): ClientStatement {
  const serverName = serverStatementName(rest);
  const serverNameBytes = Buffer.from(`${serverName}\0`, 'latin1');
  return { serverName, serverNameBytes, parse: encodeMessage(MessageType.Parse, Buffer.concat([serverNameBytes, rest])) };
}

/** Buffer#copy costs more than a loop for the few bytes of names and typical parameters. */
function copyBytes(source: Buffer, start: number, end: number, target: Buffer, at: number): void {
  if (end - start > 64) {
    source.copy(target, at, start, end);
    return;
  }
  for (let i = start; i < end; i++) target[at++] = source[i]!;
}

function terminator(body: Buffer, from: number): number {
  const end = body.indexOf(0, from);
  if (end < 0) throw new ProtocolError('unterminated string in message');
  return end;
}

const REPLY_NAMES = ['Parse', 'injected Parse', 'answered Parse', 'answered Close', 'Parse of a name in use', 'Bind', 'Describe', 'Describe', 'Execute', 'Close', 'injected Close', 'Sync', 'Query'];

function unexpected(what: string, head: Reply | undefined): ProtocolError {
  return new ProtocolError(`the server sent ${what} while the proxy expected the reply to ${head === undefined ? 'nothing' : REPLY_NAMES[head]}`);
}
