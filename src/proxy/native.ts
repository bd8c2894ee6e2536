/**
 * The native forwarder (native/forwarder.c) as the proxy sees it. After authentication a plain-TCP
 * session's two sockets can be handed to it: one epoll thread per process then forwards their
 * bytes, off Node's stream machinery, which is where the proxy's CPU went (bench/README.md).
 *
 * It is optional. npm's install step tries to build it and carries on without it; here it is
 * loaded once per process, on Linux, when it was built, and `--forwarder` picks it or Node.
 */
import { createRequire } from 'node:module';
import type net from 'node:net';
import { ChurnMap } from './churn.js';
import { decodeStatementNames, encodeStatementNames } from './pool/prepared.js';
import { SERVER_CLOSED_UNEXPECTEDLY, encodeErrorResponse, type ErrorFields } from './protocol/messages.js';

/** How sessions forward after login: `auto` is native when the addon is there, else node. */
export type ForwarderChoice = 'auto' | 'native' | 'node';
export const FORWARDER_CHOICES: readonly ForwarderChoice[] = ['auto', 'native', 'node'];

/**
 * Slots of a session's counters (a Float64Array). The Node path bumps them itself; the native
 * thread writes them in place and the usage ledger reads them only when someone asks.
 */
export const Counter = {
  BytesIn: 0,
  BytesOut: 1,
  Queries: 2,
  LastQueryAt: 3,
  // A natively forwarded pooled session: the server connection it holds (its id, 0: none), since
  // when it waits for one (ms since the epoch, 0: not waiting), and its SHOW STATS figures.
  ServerId: 4,
  WaitingSince: 5,
  Transactions: 6,
  HeldMicros: 7,
  WaitedMicros: 8,
  Requests: 9,
  RequestMicros: 10,
  /** Its named statements, kept by the thread. */
  PreparedStatements: 11,
} as const;
export const COUNTER_SLOTS = 12;

export type NativeEndReason = 'client_closed' | 'server_closed' | 'client_protocol' | 'server_protocol' | 'retired' | 'terminated' | 'internal' | 'handed_back' | 'pool_error';

export interface NativeEnd {
  reason: NativeEndReason;
  /** A socket failure ("read ECONNRESET"), a protocol error's message, a pool error's SQLSTATE and message, or ''. */
  detail: string;
  /** For server_closed: the server had sent an ErrorResponse, or the client a Terminate. */
  explained: boolean;
  /** A pooled session handed back (reason handed_back): what JavaScript takes over. */
  pooled?: NativePooledEnd;
}

/** A pooled session handed back to JavaScript (reason handed_back): what Node takes over. */
export interface NativePooledEnd {
  /** The client's descriptor, now JavaScript's, and what the client sent that was not forwarded. */
  fd?: number;
  held?: Buffer;
  /** The server connection the client held (0: none) and its last ReadyForQuery's status. */
  serverId?: number;
  status?: 'I' | 'T' | 'E';
  /** The named statements that connection holds (NUL-terminated server names, oldest first). */
  serverStatements?: Buffer;
  /** The client's named statements (PreparedStatements.adopt). */
  statements?: Buffer;
}

/** What the thread tells JavaScript about one of its pools. */
export interface NativePoolEvents {
  /** Sessions wait and the pool has no link for them: lend one (`lend`), or `failWant`, or `handBackWaiter`. */
  want(): void;
  /**
   * A link is back (idle too long, asked back, broken, or unusable): Node reads it again; the pool
   * takes it, with the named statements it holds now (server names, oldest first; undefined: the
   * thread never used it, what Node knew still holds).
   */
  returned(serverId: number, status: 'I' | 'T' | 'E', broken: boolean, statements: string[] | undefined): void;
  /** After closePool: the thread is done with the pool (no session, link or want left); its handle names nothing now. */
  closed(): void;
}

/**
 * Slots of a native pool's figures (a Float64Array the thread writes): sessions waiting, links
 * parked, and the histogram of waits for a link in µs (count, sum, a bucket per bound and one above).
 */
export const PoolFigure = { Waiting: 0, Parked: 1, WaitCount: 2, WaitSumMicros: 3, WaitBuckets: 4 } as const;

declare const nativePool: unique symbol;
/** One of the thread's pools (native/forwarder.c, "pooled sessions"). */
export type NativePoolHandle = { readonly [nativePool]: true };

declare const nativeListener: unique symbol;
/** A proxy's listening socket that the thread accepts on (native logins). */
export type NativeListenerHandle = { readonly [nativeListener]: true };

declare const nativeSession: unique symbol;
/** A session the native thread forwards; valid until its end has been reported. */
export type NativeHandle = { readonly [nativeSession]: true };

interface Binding {
  init(
    onEnd: (id: number, reason: NativeEndReason, detail: string, explained: boolean, pooled: NativePooledEnd | undefined) => void,
    serverLost: Buffer,
    onSearchPath: (id: number, value: string) => void,
    onPooled: (kind: 'want' | 'returned' | 'parameter' | 'closed', id: number, a?: number | string, b?: string, c?: boolean | number, d?: Buffer) => void,
  ): void;
  start(id: number, clientFd: number, serverFd: number, counters: Float64Array, toClient: Buffer, toServer: Buffer): NativeHandle;
  pool(id: number, figures: Float64Array, waitBoundsUs: Float64Array): NativePoolHandle;
  startPooled(id: number, clientFd: number, counters: Float64Array, held: Buffer, pool: NativePoolHandle): NativeHandle;
  lend(pool: NativePoolHandle, serverFd: number, serverId: number, lifetimeMs: number, statements: Buffer, maxPreparedStatements: number): void;
  reclaim(pool: NativePoolHandle, count: number): void;
  drain(pool: NativePoolHandle, on: 0 | 1): void;
  failWant(pool: NativePoolHandle, errorResponse: Buffer, minWaitMs: number, why: string): void;
  handBackWaiter(pool: NativePoolHandle): void;
  expire(pool: NativePoolHandle): void;
  closePool(pool: NativePoolHandle): void;
  retire(handle: NativeHandle, errorResponse: Buffer): void;
  terminate(handle: NativeHandle, errorResponse: Buffer): void;
  scanFrames(chunks: Buffer[], fromClient: boolean): NativeScan;
  listen(listenFd: number, figures: Float64Array, tlsOn: boolean, onLogin: (kind: 'accepted' | 'login' | 'brief', ...args: unknown[]) => void, brief: boolean): NativeListenerHandle;
  unlisten(listener: NativeListenerHandle): void;
  learn(listener: NativeListenerHandle, id: number, startupPacket: Buffer, welcome: Buffer, pool: NativePoolHandle): void;
  forget(listener: NativeListenerHandle, id: number): void;
}

/**
 * Why a connection the thread accepted went to JavaScript (native/forwarder.c, FALLBACK_*, in
 * order): its startup packet was not learned, it asked for TLS (the proxy has a certificate) or
 * GSS encryption, it was a cancel request, it sent no whole startup packet within a second (or hung
 * up), its startup packet was over 2 KB, --max-client-conn was reached, or anything else.
 */
export const NATIVE_LOGIN_FALLBACKS = ['unlearned', 'tls', 'gssenc', 'cancel', 'incomplete', 'too_large', 'max_client_conn', 'other'] as const;
export type NativeLoginFallback = (typeof NATIVE_LOGIN_FALLBACKS)[number];

/**
 * Slots of the login figures shared with the thread (LOGIN_* in forwarder.c): native logins and
 * their ends (not handed back, not terminated by JavaScript) as the thread counted them and as
 * JavaScript has seen them; the fallbacks follow, by NATIVE_LOGIN_FALLBACKS.
 */
export const LoginFigure = { JsAdmitted: 0, MaxClients: 1, NativeTotal: 2, Seen: 3, NativeEnds: 4, EndsSeen: 5, Fallbacks: 6 } as const;
export const LOGIN_FIGURE_SLOTS = LoginFigure.Fallbacks + NATIVE_LOGIN_FALLBACKS.length;

/** A client the thread logged in itself with a learned login. */
export interface NativeLoginReport {
  /** The thread's id for the session (negative, apart from JavaScript's). */
  threadId: number;
  learnedId: number;
  handle: NativeHandle;
  counters: Float64Array;
  cancelKey: Buffer;
  /** The client's end of the connection, "host:port", and the proxy's ('' when unknown). */
  address: string;
  localAddress: string;
}

/** What the thread's listener brings to JavaScript. */
export interface NativeLoginEvents {
  /** A connection for JavaScript to log in, with what the client sent so far. */
  accepted(fd: number, held: Buffer): void;
  loggedIn(login: NativeLoginReport): void;
  /**
   * Native logins that ended before they were reported (`brief` listeners only), `clients` of the
   * learned login `learnedId`: their counters added up (Counter; LastQueryAt the latest).
   */
  brief(learnedId: number, clients: number, counters: Float64Array): void;
}

/** What the native frame scanner made of a stream (its unit test compares it with FrameScanner's). */
export interface NativeScan {
  queries: number;
  terminated: boolean;
  lastServerType: number;
  atBoundary: boolean;
  /** The search_path the last complete server ParameterStatus for it carried. */
  searchPath: string | null;
  /** The first header with an invalid length: in which chunk, at which offset (-2: begun in an earlier chunk). */
  bad: { chunk: number; offset: number; type: number; length: number } | null;
}

/** What the proxy reaches of a socket's libuv handle: its descriptor and its unsent bytes. */
interface SocketHandle {
  fd?: number;
  writeQueueSize?: number;
}

/**
 * A session id as a key of the handler maps: JavaScript's ids are positive, the thread's own
 * (native logins) negative; both become array indices (even, odd), which V8 files without making a
 * string of each (churn.ts).
 */
function slotOf(id: number): number {
  return id >= 0 ? id * 2 : -id * 2 - 1;
}

export class NativeForwarder {
  private readonly ends = new ChurnMap<number, (end: NativeEnd) => void>();
  private readonly searchPaths = new ChurnMap<number, (value: string) => void>();
  /** Pooled sessions' parameter reports, by session id; pools' events, by pool id. */
  private readonly parameterReports = new ChurnMap<number, (name: string, value: string, serverId: number) => void>();
  private readonly poolEvents = new Map<number, NativePoolEvents>();
  private nextPoolId = 1;

  constructor(private readonly binding: Binding) {
    // What the thread sends a client when the server hangs up unexplained, as the Node path does.
    binding.init(this.onEnd, encodeErrorResponse(SERVER_CLOSED_UNEXPECTEDLY), this.onSearchPath, this.onPooled);
  }

  /**
   * Takes over a session's sockets, or returns undefined (and touches nothing) when it cannot:
   * a socket without a descriptor, or with bytes Node has not sent or delivered yet. On success
   * the Node sockets are destroyed (closed without a shutdown: the thread holds duplicates).
   */
  take(
    id: number,
    client: net.Socket,
    server: net.Socket,
    counters: Float64Array,
    rest: { toClient: Buffer; toServer: Buffer },
    onEnd: (end: NativeEnd) => void,
    /** The server reported a new search_path (PostgreSQL 18 reports every change). */
    onSearchPath: (value: string) => void,
  ): NativeHandle | undefined {
    const clientFd = idleDescriptor(client);
    const serverFd = idleDescriptor(server);
    if (clientFd === undefined || serverFd === undefined) return undefined;
    // Throws when the descriptors cannot be duplicated (EMFILE): the caller forwards in Node.
    const handle = this.binding.start(id, clientFd, serverFd, counters, rest.toClient, rest.toServer);
    this.ends.set(slotOf(id), onEnd);
    this.searchPaths.set(slotOf(id), onSearchPath);
    letGo(client);
    letGo(server);
    return handle;
  }

  /**
   * A pool of the thread's, for the pooled sessions of one pool key and set of client parameters;
   * it writes its figures (PoolFigure) into `figures`, with a wait bucket per bound (µs) and one above.
   */
  createPool(events: NativePoolEvents, figures: Float64Array, waitBoundsUs: Float64Array): NativePoolHandle {
    const id = this.nextPoolId++;
    const handle = this.binding.pool(id, figures, waitBoundsUs);
    this.poolEvents.set(id, events);
    return handle;
  }

  /**
   * Takes over a pooled (transaction mode) client's socket, or returns undefined (touching nothing)
   * when Node still holds bytes of it. `held`: what the client sent after its login. The end goes to
   * `onEnd`, the server's parameter reports to `onParameter`.
   */
  takePooled(
    id: number,
    client: net.Socket,
    counters: Float64Array,
    held: Buffer,
    pool: NativePoolHandle,
    /** The server reported a parameter on the connection with this id (0: none held). */
    onParameter: (name: string, value: string, serverId: number) => void,
    onEnd: (end: NativeEnd) => void,
  ): NativeHandle | undefined {
    const clientFd = idleDescriptor(client);
    if (clientFd === undefined) return undefined;
    const handle = this.binding.startPooled(id, clientFd, counters, held, pool);
    this.ends.set(slotOf(id), onEnd);
    this.parameterReports.set(slotOf(id), onParameter);
    letGo(client);
    return handle;
  }

  /**
   * Lends a pool that asked a server connection (the thread works on a duplicate of its descriptor),
   * with the named statements it holds (server names, oldest first) and how many it may hold.
   */
  lend(pool: NativePoolHandle, serverFd: number, serverId: number, lifetimeMs: number, statements: string[], maxPreparedStatements: number): void {
    this.binding.lend(pool, serverFd, serverId, lifetimeMs, encodeStatementNames(statements), maxPreparedStatements);
  }

  /** Asks `count` links back: parked ones now, others as they come free. */
  reclaim(pool: NativePoolHandle, count: number): void {
    this.binding.reclaim(pool, count);
  }

  /** While on, every link of the pool goes back as it comes free. */
  drain(pool: NativePoolHandle, on: boolean): void {
    this.binding.drain(pool, on ? 1 : 0);
  }

  /** Every link lent so far goes back: parked ones now, the others as they come free (RECONNECT); new lends stay. */
  expire(pool: NativePoolHandle): void {
    this.binding.expire(pool);
  }

  /** No server connection for a want: the longest waiter gets `error` if it waited `minWaitMs` (its end: pool_error). */
  failWant(pool: NativePoolHandle, error: ErrorFields, minWaitMs: number): void {
    this.binding.failWant(pool, encodeErrorResponse(error), minWaitMs, `${error.code} ${error.message}`);
  }

  /** No server connection the thread can use: the longest waiter goes back to Node. */
  handBackWaiter(pool: NativePoolHandle): void {
    this.binding.handBackWaiter(pool);
  }

  /**
   * The pool is not wanted any more: the thread logs no client in to it, serves its remaining sessions
   * and gives its links back; once none is left, `closed` comes, and nothing may name the handle after.
   */
  closePool(pool: NativePoolHandle): void {
    this.binding.closePool(pool);
  }

  /** The client's next message gets this ErrorResponse instead of an answer, and the session ends. */
  retire(handle: NativeHandle, errorResponse: Buffer): void {
    this.binding.retire(handle, errorResponse);
  }

  /** Ends the session now: the ErrorResponse goes to the client if it is between two server messages. */
  terminate(handle: NativeHandle, errorResponse: Buffer): void {
    this.binding.terminate(handle, errorResponse);
  }

  private readonly onEnd = (id: number, reason: NativeEndReason, detail: string, explained: boolean, pooled: NativePooledEnd | undefined): void => {
    const slot = slotOf(id);
    const handler = this.ends.get(slot);
    this.ends.delete(slot);
    this.searchPaths.delete(slot);
    this.parameterReports.delete(slot);
    // An exception must not escape into the addon's callback.
    try {
      handler?.(pooled ? { reason, detail, explained, pooled } : { reason, detail, explained });
    } catch (error) {
      process.emitWarning(`tandem: failure while ending a natively forwarded session: ${(error as Error).message}`);
    }
  };

  private readonly onPooled = (kind: 'want' | 'returned' | 'parameter' | 'closed', id: number, a?: number | string, b?: string, c?: boolean | number, d?: Buffer): void => {
    try {
      if (kind === 'parameter') this.parameterReports.get(slotOf(id))?.(a as string, b as string, c as number);
      else if (kind === 'want') this.poolEvents.get(id)?.want();
      else if (kind === 'closed') {
        const events = this.poolEvents.get(id);
        this.poolEvents.delete(id);
        events?.closed();
      }
      else this.poolEvents.get(id)?.returned(a as number, b as 'I' | 'T' | 'E', c === true, d && decodeStatementNames(d));
    } catch (error) {
      process.emitWarning(`tandem: failure in a natively forwarded pool: ${(error as Error).message}`);
    }
  };

  /**
   * The thread accepts on the listening socket from now on (a duplicate of `listenFd`) and logs in
   * the clients whose startup packet it learned (`learn`); `figures` as LoginFigure.
   */
  /**
   * `brief`: a native login that ends before the thread has reported it (within its report window,
   * about 1 ms) is never reported on its own, only counted in `events.brief`; for when no line is
   * logged per client.
   */
  listen(listenFd: number, figures: Float64Array, tlsOn: boolean, events: NativeLoginEvents, brief: boolean): NativeListenerHandle {
    return this.binding.listen(
      listenFd,
      figures,
      tlsOn,
      (kind, ...args) => {
        try {
          if (kind === 'accepted') events.accepted(args[0] as number, args[1] as Buffer);
          else if (kind === 'brief') events.brief(args[0] as number, args[1] as number, args[2] as Float64Array);
          else {
            const [threadId, learnedId, handle, counters, cancelKey, address, localAddress] = args as [number, number, NativeHandle, Float64Array, Buffer, string, string];
            events.loggedIn({ threadId, learnedId, handle, counters, cancelKey, address, localAddress });
          }
        } catch (error) {
          process.emitWarning(`tandem: failure while taking a connection from the native listener: ${(error as Error).message}`);
        }
      },
      brief,
    );
  }

  /** No more accepting; connections whose startup packet was being read come to `accepted`. */
  unlisten(listener: NativeListenerHandle): void {
    this.binding.unlisten(listener);
  }

  /** From now on the thread logs in a client that sends exactly `startupPacket`: it is sent `welcome` (then a cancel key and ReadyForQuery) and joins `pool`. */
  learn(listener: NativeListenerHandle, id: number, startupPacket: Buffer, welcome: Buffer, pool: NativePoolHandle): void {
    this.binding.learn(listener, id, startupPacket, welcome, pool);
  }

  forget(listener: NativeListenerHandle, id: number): void {
    this.binding.forget(listener, id);
  }

  /** A natively logged-in session's reports (its end, its server's parameters) go to these handlers. */
  adopt(threadId: number, onParameter: (name: string, value: string, serverId: number) => void, onEnd: (end: NativeEnd) => void): void {
    this.ends.set(slotOf(threadId), onEnd);
    this.parameterReports.set(slotOf(threadId), onParameter);
  }

  /** The native frame scanner alone, over `chunks` as one stream: for its unit test. */
  scanFrames(chunks: Buffer[], fromClient: boolean): NativeScan {
    return this.binding.scanFrames(chunks, fromClient);
  }

  private readonly onSearchPath = (id: number, value: string): void => {
    try {
      this.searchPaths.get(slotOf(id))?.(value);
    } catch (error) {
      process.emitWarning(`tandem: failure while taking a natively forwarded session's search_path: ${(error as Error).message}`);
    }
  };
}

/**
 * The socket's descriptor, if Node holds nothing for it: no unsent bytes, no unread ones. Node has
 * no public way to reach a TCP socket's descriptor, so this is the one place that reads its private
 * libuv handle (`_handle.fd`, `writeQueueSize`); test/unit/native-handle.test.ts fails if Node
 * changes them, and without a descriptor the session simply forwards in Node.
 */
export function idleDescriptor(socket: net.Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: SocketHandle | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  if (socket.writableLength > 0 || (handle?.writeQueueSize ?? 0) > 0 || socket.readableLength > 0) return undefined;
  return fd;
}

/** A socket the thread took a duplicate of: Node's closes without a shutdown, and nothing it does is heard any more. */
function letGo(socket: net.Socket): void {
  socket.removeAllListeners();
  socket.on('error', () => {});
  socket.destroy();
}

/** What the proxy reaches of a socket's libuv handle to stop and restart its reads. */
interface ReadingHandle {
  reading?: boolean;
  readStop?(): number;
  readStart?(): number;
}

/**
 * Stops Node reading a socket at the libuv handle (socket.pause() only stops 'data' events: Node
 * would go on reading into its buffer), while the native thread reads its descriptor. Same private
 * handle as idleDescriptor. False when the handle cannot.
 */
export function stopReading(socket: net.Socket): boolean {
  const handle = (socket as unknown as { _handle?: ReadingHandle | null })._handle;
  if (!handle?.readStop) return false;
  if (handle.reading && handle.readStop() !== 0) return false;
  handle.reading = false;
  return true;
}

/** Node reads the socket again (after stopReading). */
export function startReading(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle?: ReadingHandle | null })._handle;
  if (!handle?.readStart || handle.reading || socket.destroyed) return;
  handle.reading = true;
  if (handle.readStart() !== 0) socket.destroy(new Error('could not read the server connection again'));
}

export interface ForwarderSelection {
  /** Undefined: sessions forward in Node. */
  forwarder: NativeForwarder | undefined;
  /** For the startup log line: which path, and why when `auto` could not use the native one. */
  description: string;
}

let loaded: { forwarder: NativeForwarder } | { unavailable: string } | undefined;

function load(): { forwarder: NativeForwarder } | { unavailable: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') {
    loaded = { unavailable: `the native forwarder is Linux-only (this is ${process.platform})` };
    return loaded;
  }
  // The same relative path from src/proxy/ and from dist/proxy/.
  const path = new URL('../../native/build/Release/tandem_forwarder.node', import.meta.url).pathname;
  try {
    const binding = createRequire(import.meta.url)(path) as Binding;
    loaded = { forwarder: new NativeForwarder(binding) };
  } catch (error) {
    loaded = { unavailable: `the native forwarder is not available (${(error as Error).message.split('\n')[0]}); build it with npm run build:native` };
  }
  return loaded;
}

/** Resolves --forwarder; throws for `native` when the addon is not there. */
export function selectForwarder(choice: ForwarderChoice): ForwarderSelection {
  if (choice === 'node') return { forwarder: undefined, description: 'node (--forwarder node)' };
  const native = load();
  if ('forwarder' in native) return { forwarder: native.forwarder, description: 'native (epoll thread; TLS clients and TLS upstreams forward in node)' };
  if (choice === 'native') throw new Error(`--forwarder native: ${native.unavailable}`);
  return { forwarder: undefined, description: `node (${native.unavailable})` };
}
