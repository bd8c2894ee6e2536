/**
 * A server session the proxy opens for its own use (looking up secrets, probing the upstream) rather
 * than for a client: opened the way client sessions are (upstream.ts: TCP or Unix socket, TLS per
 * sslmode, then a StartupMessage with the parameters given), logged in with a stored secret or SCRAM
 * keys, and able to run a query with bound parameters and read its rows as text.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import { FrameReader, ProtocolError, describeType, type TypedFrame } from '../protocol/frames.js';
import {
  AuthCode,
  MessageType,
  PROTOCOL_3_0,
  TERMINATE,
  encodeMessage,
  encodeStartupMessage,
  parseAuthRequest,
  parseErrorFields,
  parseParameterStatus,
  type ErrorFields,
  type StartupParams,
} from '../protocol/messages.js';
import { idleDescriptor, startReading, stopReading } from '../native.js';
import { describeTarget, openUpstream, type UpstreamTarget } from '../upstream.js';
import { authenticationData, encodePasswordMessage, encodeSASLInitialResponse, encodeSASLResponse } from './messages.js';
import { md5Response } from './md5.js';
import { SCRAM_SHA_256, ScramClientExchange, type ScramKeys } from './scram.js';
import type { Secret } from './secret.js';

export interface ServerLogin {
  user: string;
  database: string;
  /** How to prove who we are. Neither: the server must trust us. */
  secret?: Secret;
  /** SCRAM pass-through: the ClientKey and ServerKey of a client's login. */
  scramKeys?: ScramKeys;
  /** More startup parameters (search_path, application_name…), sent after user and database. */
  params?: StartupParams;
}

/** The server (or whatever answers in its place) sent an ErrorResponse. */
export class ServerError extends Error {
  readonly code: string;
  constructor(readonly fields: ReadonlyMap<string, string>) {
    super(fields.get('M') ?? 'the server reported an error');
    this.name = 'ServerError';
    this.code = fields.get('C') ?? 'XX000';
  }

  /** The error as the server worded it, to pass on to a client. */
  get errorFields(): ErrorFields {
    const detail = this.fields.get('D');
    const hint = this.fields.get('H');
    return {
      severity: this.fields.get('S') === 'ERROR' ? 'ERROR' : 'FATAL',
      code: this.code,
      message: this.message,
      ...(detail !== undefined ? { detail } : {}),
      ...(hint !== undefined ? { hint } : {}),
    };
  }
}

export type Row = Array<string | null>;

/** Server messages outside a query are small; a row of a secret lookup or a probe is too. */
const MAX_MESSAGE_LENGTH = 1024 * 1024;

export class ServerSession {
  /** ParameterStatus values reported at login and since (also while streamed to a client). */
  readonly parameters = new Map<string, string>();
  /** The ParameterStatus frames of the login, as sent: what a pooled client is told it has. */
  readonly parameterFrames: Buffer[] = [];
  /** The server's BackendKeyData body (process id, secret key): where a cancel for this session goes. */
  backendKey: Buffer | undefined;
  /** The status of the last ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' in a failed one. */
  transactionStatus: 'I' | 'T' | 'E' = 'I';
  private readonly reader: FrameReader;
  /** While set, every frame goes here as it arrives instead of waiting for `next()` (a lent pooled connection). */
  private streamTo: ((frame: TypedFrame) => void) | undefined;
  /** Called after the frames of one read have gone to `streamTo` (to uncork what they were written to). */
  private streamBatchEnd: (() => void) | undefined;
  private waiting: { resolve(): void; reject(error: Error): void } | undefined;
  private failure: Error | undefined;
  private loggedIn = false;
  private busy: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly socket: net.Socket,
    private readonly where: string,
    private readonly timeoutMs: number,
    maxMessageLength = MAX_MESSAGE_LENGTH,
  ) {
    this.reader = new FrameReader(maxMessageLength);
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      if (this.streamTo) this.drainToStream();
      else this.wake();
    });
    socket.on('error', (error: Error) => this.fail(error));
    socket.on('close', () => this.fail(new Error(`${where} closed the connection`)));
    socket.resume();
  }

  /** Opens a session and logs in; rejects with ServerError when the server refuses. */
  static async open(target: UpstreamTarget, login: ServerLogin, maxMessageLength?: number): Promise<ServerSession> {
    const socket = await openUpstream(target);
    const session = new ServerSession(socket, describeTarget(target), target.connectTimeoutMs, maxMessageLength);
    try {
      await session.logIn(login);
      return session;
    } catch (error) {
      session.close();
      throw error;
    }
  }

  /** False once the connection failed or was closed: open a new one. */
  get usable(): boolean {
    return this.failure === undefined;
  }

  /** The local port of the connection (PgBouncer's SHOW SERVERS lists it). */
  get localPort(): number | undefined {
    return this.socket.localPort;
  }

  /**
   * Hands every frame that arrives to `onFrame` (synchronously, in order) until `stream(undefined)`;
   * for a pooled connection lent to a client. Frames already buffered go first.
   */
  stream(onFrame: ((frame: TypedFrame) => void) | undefined, onBatchEnd?: () => void): void {
    this.streamTo = onFrame;
    this.streamBatchEnd = onFrame ? onBatchEnd : undefined;
    if (onFrame) this.drainToStream();
  }

  /** Writes frames as they are (a lent connection's client traffic); false when the socket buffer is full. */
  write(bytes: Buffer): boolean {
    return this.socket.write(bytes);
  }

  /**
   * The descriptor for the native forwarder to work on while the connection is lent to a natively
   * forwarded client, with Node's reads stopped; undefined (nothing changed) when Node holds bytes
   * of it, a query of the proxy's own is under way, or the socket has no plain descriptor (TLS).
   */
  lendDescriptor(): number | undefined {
    if (this.failure !== undefined || this.streamTo || this.waiting || this.reader.pending > 0) return undefined;
    // TLS records are not the protocol's bytes: such a connection stays with Node.
    if ((this.socket as Partial<tls.TLSSocket>).encrypted === true) return undefined;
    const fd = idleDescriptor(this.socket);
    if (fd === undefined || !stopReading(this.socket)) return undefined;
    return fd;
  }

  /** Back from the native forwarder, in this transaction status: Node reads the connection again. */
  takeBack(status: 'I' | 'T' | 'E'): void {
    this.transactionStatus = status;
    startReading(this.socket);
  }

  /** A parameter the server reported while the native forwarder had the connection. */
  noteReported(name: string, value: string): void {
    this.parameters.set(name, value);
  }

  /** The socket, for backpressure ('drain') and pausing by whoever the connection is lent to. */
  get connection(): net.Socket {
    return this.socket;
  }

  /**
   * Runs SQL through the simple query protocol (statements such as DISCARD ALL that refuse a
   * transaction block, and several statements at once); settles at ReadyForQuery.
   */
  simpleQuery(sql: string): Promise<void> {
    const run = this.busy.then(async () => {
      this.socket.write(encodeMessage(MessageType.Query, cString(sql)));
      let error: ServerError | undefined;
      for (;;) {
        let frame: TypedFrame;
        try {
          frame = await this.next();
        } catch (failure) {
          this.socket.destroy();
          throw failure;
        }
        if (frame.type === MessageType.ErrorResponse) error = new ServerError(parseErrorFields(frame.body));
        else if (frame.type === MessageType.ReadyForQuery) {
          if (error) throw error;
          return;
        } else if (frame.type !== MessageType.DataRow && frame.type !== MessageType.CommandComplete) this.other(frame);
      }
    });
    this.busy = run.catch(() => {});
    return run;
  }

  private drainToStream(): void {
    let frame: TypedFrame | undefined;
    try {
      while (this.streamTo && (frame = this.reader.nextTyped())) {
        if (frame.type === MessageType.ReadyForQuery) this.transactionStatus = transactionStatusOf(frame.body);
        else if (frame.type === MessageType.ParameterStatus) this.noteParameter(frame);
        this.streamTo(frame);
      }
    } catch (error) {
      this.fail(error as Error);
      this.socket.destroy();
    }
    this.streamBatchEnd?.();
  }

  /**
   * Runs one statement through the extended protocol, so parameters are bound, never spliced into
   * the SQL. Calls queue: one statement at a time on the connection.
   */
  query(sql: string, params: ReadonlyArray<string | null> = []): Promise<Row[]> {
    const run = this.busy.then(() => this.runQuery(sql, params));
    this.busy = run.catch(() => {});
    return run;
  }

  close(): void {
    if (this.failure === undefined) this.socket.end(TERMINATE, () => this.socket.destroy());
    else this.socket.destroy();
    this.fail(new Error('session closed'));
  }

  private async runQuery(sql: string, params: ReadonlyArray<string | null>): Promise<Row[]> {
    try {
      return await this.exchangeQuery(sql, params);
    } catch (error) {
      // A ServerError comes after ReadyForQuery, with the connection in step; anything else leaves
      // it mid-answer, unusable.
      if (!(error instanceof ServerError)) {
        this.fail(error as Error);
        this.socket.destroy();
      }
      throw error;
    }
  }

  private async exchangeQuery(sql: string, params: ReadonlyArray<string | null>): Promise<Row[]> {
    this.socket.write(Buffer.concat([encodeParse(sql), encodeBind(params), encodeExecute(), SYNC]));
    const rows: Row[] = [];
    let error: ServerError | undefined;
    for (;;) {
      const frame = await this.next();
      switch (frame.type) {
        case MessageType.DataRow:
          rows.push(parseDataRow(frame.body));
          break;
        case MessageType.ErrorResponse:
          error = new ServerError(parseErrorFields(frame.body));
          break;
        case MessageType.ReadyForQuery:
          if (error) throw error;
          return rows;
        default:
          this.other(frame);
      }
    }
  }

  private async logIn(login: ServerLogin): Promise<void> {
    const params: StartupParams = [['user', login.user], ['database', login.database], ...(login.params ?? [])];
    this.socket.write(encodeStartupMessage(PROTOCOL_3_0, params));
    let scram: ScramClientExchange | undefined;
    for (;;) {
      const frame = await this.next();
      if (frame.type === MessageType.ReadyForQuery) {
        this.loggedIn = true;
        return;
      }
      if (frame.type === MessageType.ErrorResponse) throw new ServerError(parseErrorFields(frame.body));
      if (frame.type !== MessageType.Authentication) {
        this.other(frame);
        continue;
      }
      const request = parseAuthRequest(frame.body);
      switch (request.code) {
        case AuthCode.Ok:
          break;
        case AuthCode.CleartextPassword:
          if (login.secret?.kind !== 'plain') throw this.cannotAnswer(login, 'a plain-text password');
          this.socket.write(encodePasswordMessage(login.secret.password));
          break;
        case AuthCode.MD5Password:
          if (!login.secret || login.secret.kind === 'scram') throw this.cannotAnswer(login, 'md5');
          this.socket.write(encodePasswordMessage(md5Response(login.user, login.secret, authenticationData(frame.body))));
          break;
        case AuthCode.SASL: {
          if (!request.mechanisms?.includes(SCRAM_SHA_256)) throw new Error(`${this.where} offers only SASL mechanisms the proxy does not speak: ${request.mechanisms?.join(', ')}`);
          const credentials = login.scramKeys ?? (login.secret?.kind === 'plain' ? { password: login.secret.password } : undefined);
          if (!credentials) throw this.cannotAnswer(login, 'SCRAM-SHA-256');
          scram = new ScramClientExchange(credentials);
          this.socket.write(encodeSASLInitialResponse(SCRAM_SHA_256, scram.clientFirst()));
          break;
        }
        case AuthCode.SASLContinue:
          if (!scram) throw new ProtocolError('SASLContinue without a SASL exchange');
          this.socket.write(encodeSASLResponse(scram.clientFinal(authenticationData(frame.body))));
          break;
        case AuthCode.SASLFinal:
          if (!scram) throw new ProtocolError('SASLFinal without a SASL exchange');
          scram.verifyServerFinal(authenticationData(frame.body));
          break;
        default:
          throw new Error(`${this.where} asks for authentication method ${request.code}, which the proxy does not speak`);
      }
    }
  }

  private cannotAnswer(login: ServerLogin, method: string): Error {
    const has = login.scramKeys ? 'SCRAM keys' : login.secret ? `a ${login.secret.kind === 'md5' ? 'md5 hash' : login.secret.kind === 'scram' ? 'SCRAM verifier' : 'password'}` : 'no secret';
    return new Error(`${this.where} asks user "${login.user}" for ${method}, and the proxy has ${has} for it`);
  }

  /** Messages that may come at any time: parameter changes and notices; anything else is a bug. */
  private other(frame: TypedFrame): void {
    if (frame.type === MessageType.ParameterStatus) {
      this.noteParameter(frame);
      if (!this.loggedIn) this.parameterFrames.push(Buffer.from(frame.frame));
    } else if (frame.type === MessageType.BackendKeyData) {
      this.backendKey = Buffer.from(frame.body);
    } else if (!QUIET.has(frame.type)) {
      throw new ProtocolError(`unexpected message ${describeType(frame.type)} from ${this.where}`);
    }
  }

  /** Kept whoever reads the frame: a pooled connection's parameters decide what its next client needs SET. */
  private noteParameter(frame: TypedFrame): void {
    const { name, value } = parseParameterStatus(frame.body);
    this.parameters.set(name, value);
  }

  private async next(): Promise<TypedFrame> {
    for (;;) {
      const frame = this.reader.nextTyped();
      if (frame) {
        if (frame.type === MessageType.ReadyForQuery) this.transactionStatus = transactionStatusOf(frame.body);
        return frame;
      }
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiting = undefined;
          const error = new Error(`${this.where} did not answer within ${this.timeoutMs} ms`);
          this.fail(error);
          this.socket.destroy();
          reject(error);
        }, this.timeoutMs);
        this.waiting = {
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        };
      });
    }
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(this.failure);
  }
}

/** Harmless messages a query or a login can bring. */
const QUIET = new Set<number>([
  MessageType.BackendKeyData,
  MessageType.NoticeResponse,
  MessageType.NegotiateProtocolVersion,
  MessageType.ParseComplete,
  MessageType.BindComplete,
  MessageType.CommandComplete,
  MessageType.EmptyQueryResponse,
  MessageType.NoData,
  MessageType.RowDescription,
]);

function transactionStatusOf(body: Buffer): 'I' | 'T' | 'E' {
  const status = String.fromCharCode(body[0] ?? 0x49);
  return status === 'T' || status === 'E' ? status : 'I';
}

const cString = (text: string): Buffer => Buffer.from(`${text}\0`, 'utf8');

/** Parse of the unnamed statement, parameter types left to the server. */
function encodeParse(sql: string): Buffer {
  return encodeMessage(MessageType.Parse, Buffer.concat([cString(''), cString(sql), Buffer.alloc(2)]));
}

/** Bind of the unnamed portal: all parameters as text, all results as text. */
function encodeBind(params: ReadonlyArray<string | null>): Buffer {
  const parts: Buffer[] = [cString(''), cString(''), int16(0), int16(params.length)];
  for (const value of params) {
    if (value === null) parts.push(int32(-1));
    else {
      const bytes = Buffer.from(value, 'utf8');
      parts.push(int32(bytes.length), bytes);
    }
  }
  parts.push(int16(0));
  return encodeMessage(MessageType.Bind, Buffer.concat(parts));
}

function encodeExecute(): Buffer {
  return encodeMessage(MessageType.Execute, Buffer.concat([cString(''), int32(0)]));
}

const SYNC = encodeMessage(MessageType.Sync, Buffer.alloc(0));

function int16(value: number): Buffer {
  const buffer = Buffer.alloc(2);
  buffer.writeInt16BE(value, 0);
  return buffer;
}

function int32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeInt32BE(value, 0);
  return buffer;
}

function parseDataRow(body: Buffer): Row {
  const count = body.readInt16BE(0);
  const row: Row = [];
  let offset = 2;
  for (let i = 0; i < count; i++) {
    const length = body.readInt32BE(offset);
    offset += 4;
    if (length < 0) row.push(null);
    else {
      if (offset + length > body.length) throw new ProtocolError('DataRow shorter than its columns');
      row.push(body.toString('utf8', offset, offset + length));
      offset += length;
    }
  }
  return row;
}
