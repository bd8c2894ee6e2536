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
import { SERVER_CLOSED_UNEXPECTEDLY, encodeErrorResponse } from './protocol/messages.js';

/** How sessions forward after login: `auto` is native when the addon is there, else node. */
export type ForwarderChoice = 'auto' | 'native' | 'node';
export const FORWARDER_CHOICES: readonly ForwarderChoice[] = ['auto', 'native', 'node'];

/**
 * Slots of a session's counters (a Float64Array). The Node path bumps them itself; the native
 * thread writes them in place and the usage ledger reads them only when someone asks.
 */
export const Counter = { BytesIn: 0, BytesOut: 1, Queries: 2, LastQueryAt: 3 } as const;
export const COUNTER_SLOTS = 4;

export type NativeEndReason = 'client_closed' | 'server_closed' | 'client_protocol' | 'server_protocol' | 'retired' | 'terminated' | 'internal' | 'handed_back';

export interface NativeEnd {
  reason: NativeEndReason;
  /** A socket failure ("read ECONNRESET"), a protocol error's message, or ''. */
  detail: string;
  /** For server_closed: the server had sent an ErrorResponse, or the client a Terminate. */
  explained: boolean;
  /** A pooled session's end: how it leaves the server connection it was lent. */
  pooled?: NativePooledEnd;
}

export interface NativePooledEnd {
  /** The thread held a lent server connection when the session ended. */
  lent: boolean;
  /** It was between requests: nothing sent to it is unanswered (else it is mid-answer, not reusable). */
  clean: boolean;
  /** Its last ReadyForQuery's transaction status. */
  status: 'I' | 'T' | 'E';
  /** Requests answered since the last give-back, and the µs the server took for them. */
  requests: number;
  requestMicros: number;
  /** handed_back: the client's descriptor, now JavaScript's, and what it sent that was not forwarded. */
  fd?: number;
  held?: Buffer;
}

/** What a pooled session's thread tells JavaScript besides its end. */
export interface NativePooledEvents {
  /** A whole request waits: lend a server connection (`lend`) or take the client back (`handBack`). */
  want(): void;
  /** The lent connection is idle again and JavaScript's socket may read it. */
  givenBack(requests: number, requestMicros: number): void;
  /** The server reported a parameter (a SET, or a function's set_config, in the client's transaction). */
  parameter(name: string, value: string): void;
}

declare const nativeSession: unique symbol;
/** A session the native thread forwards; valid until its end has been reported. */
export type NativeHandle = { readonly [nativeSession]: true };

interface Binding {
  init(
    onEnd: (id: number, reason: NativeEndReason, detail: string, explained: boolean, pooled: NativePooledEnd | undefined) => void,
    serverLost: Buffer,
    onSearchPath: (id: number, value: string) => void,
    onPooled: (id: number, kind: 'want' | 'give_back' | 'parameter', a?: number | string, b?: number | string) => void,
  ): void;
  start(id: number, clientFd: number, serverFd: number, counters: Float64Array, toClient: Buffer, toServer: Buffer): NativeHandle;
  startPooled(id: number, clientFd: number, counters: Float64Array, held: Buffer): NativeHandle;
  lend(handle: NativeHandle, serverFd: number): void;
  handBack(handle: NativeHandle): void;
  retire(handle: NativeHandle, errorResponse: Buffer): void;
  terminate(handle: NativeHandle, errorResponse: Buffer): void;
  scanFrames(chunks: Buffer[], fromClient: boolean): NativeScan;
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

export class NativeForwarder {
  private readonly ends = new Map<number, (end: NativeEnd) => void>();
  private readonly searchPaths = new Map<number, (value: string) => void>();
  private readonly pooledEvents = new Map<number, NativePooledEvents>();

  constructor(private readonly binding: Binding) {
    // What the thread sends a client when the server hangs up unexplained, as the Node path does.
    binding.init(this.onEnd, encodeErrorResponse(SERVER_CLOSED_UNEXPECTEDLY), this.onSearchPath, this.onPooled);
  }

  /**
   * Takes over a pooled (transaction mode) client's socket, or returns undefined (touching nothing)
   * when Node still holds bytes of it. `held`: what the client sent after its login. The thread asks
   * for a server connection per request through `events`, and reports the end to `onEnd`.
   */
  takePooled(id: number, client: net.Socket, counters: Float64Array, held: Buffer, events: NativePooledEvents, onEnd: (end: NativeEnd) => void): NativeHandle | undefined {
    const clientFd = idleDescriptor(client);
    if (clientFd === undefined) return undefined;
    const handle = this.binding.startPooled(id, clientFd, counters, held);
    this.ends.set(id, onEnd);
    this.pooledEvents.set(id, events);
    client.removeAllListeners();
    client.on('error', () => {});
    client.destroy();
    return handle;
  }

  /** Lends the thread a server connection's descriptor (it works on a duplicate until it gives it back). */
  lend(handle: NativeHandle, serverFd: number): void {
    this.binding.lend(handle, serverFd);
  }

  /** Answers the thread's want by taking the client back (an end with reason handed_back follows). */
  handBack(handle: NativeHandle): void {
    this.binding.handBack(handle);
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
    this.ends.set(id, onEnd);
    this.searchPaths.set(id, onSearchPath);
    for (const socket of [client, server]) {
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.destroy();
    }
    return handle;
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
    const handler = this.ends.get(id);
    this.ends.delete(id);
    this.searchPaths.delete(id);
    this.pooledEvents.delete(id);
    // An exception must not escape into the addon's callback.
    try {
      handler?.(pooled ? { reason, detail, explained, pooled } : { reason, detail, explained });
    } catch (error) {
      process.emitWarning(`tandem: failure while ending a natively forwarded session: ${(error as Error).message}`);
    }
  };

  private readonly onPooled = (id: number, kind: 'want' | 'give_back' | 'parameter', a?: number | string, b?: number | string): void => {
    const events = this.pooledEvents.get(id);
    if (!events) return;
    try {
      if (kind === 'want') events.want();
      else if (kind === 'give_back') events.givenBack(a as number, b as number);
      else events.parameter(a as string, b as string);
    } catch (error) {
      process.emitWarning(`tandem: failure in a natively forwarded pooled session: ${(error as Error).message}`);
    }
  };

  /** The native frame scanner alone, over `chunks` as one stream: for its unit test. */
  scanFrames(chunks: Buffer[], fromClient: boolean): NativeScan {
    return this.binding.scanFrames(chunks, fromClient);
  }

  private readonly onSearchPath = (id: number, value: string): void => {
    try {
      this.searchPaths.get(id)?.(value);
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
