/**
 * A logged-in session's bytes, both ways, with only frame headers looked at: in Node (NodeForwarding),
 * or by the native thread after a hand-over (handOverToNative) when both sides are plain TCP.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../../observe/logger.js';
import { Counter, type NativeEnd, type NativeForwarder, type NativeHandle } from '../native.js';
import { FrameScanner } from '../protocol/frames.js';
import { MessageType, TERMINATE, encodeErrorResponse, parseParameterStatus, type ErrorFields } from '../protocol/messages.js';
import { endClient } from './client.js';

/** ParameterStatus bodies read after login (for search_path); native/forwarder.c has the same bound. */
const MAX_PARAMETER_STATUS_BODY = 4096;

export function retiredError(message: string): ErrorFields {
  return { severity: 'FATAL', code: '57P01', message };
}

/** Whether the native thread may forward these sockets: TLS (either side) stays in Node, the thread moves bytes, not records. */
export function nativeCanForward(client: net.Socket | tls.TLSSocket, server: net.Socket): boolean {
  const encrypted = (socket: net.Socket | tls.TLSSocket) => (socket as Partial<tls.TLSSocket>).encrypted === true;
  return !encrypted(client) && !encrypted(server);
}

/** What the Node forwarding tells the session it belongs to. */
export interface ForwardingEvents {
  /** The server reported a new search_path (PostgreSQL 18 reports every change). */
  searchPath(value: string): void;
  /** The client broke the protocol (a ProtocolError) or something failed unexpectedly. */
  clientFailed(error: unknown): void;
  serverBrokeProtocol(detail: string): void;
  /** The client sent its next message after the version was retired. */
  retired(error: ErrorFields): void;
}

export class NodeForwarding {
  private readonly clientScanner: FrameScanner;
  private readonly serverScanner: FrameScanner;
  /** The client sent Terminate: the server hanging up next is the normal end, not a failure. */
  clientTerminated = false;
  /** The type of the last message the server started sending, to tell whether it already sent an error. */
  lastServerType = 0;
  private retiredMessage: string | undefined;
  private stopped = false;

  constructor(
    private readonly client: net.Socket | tls.TLSSocket,
    private readonly server: net.Socket,
    /** Bytes, queries, last query (see Counter). */
    private readonly counters: Float64Array,
    private readonly events: ForwardingEvents,
  ) {
    this.clientScanner = new FrameScanner(this.onClientFrame);
    this.serverScanner = new FrameScanner(this.onServerFrame, undefined, {
      type: MessageType.ParameterStatus,
      maxLength: MAX_PARAMETER_STATUS_BODY,
      onBody: (body) => {
        const { name, value } = parseParameterStatus(body);
        if (name === 'search_path') this.events.searchPath(value);
      },
    });
  }

  /** Forwards what was read past ReadyForQuery, then everything that follows. */
  start(fromServer: Buffer, fromClient: Buffer): void {
    if (fromServer.length > 0) this.forwardToClient(fromServer);
    if (fromClient.length > 0) this.forwardToServer(fromClient);
    if (this.stopped) return;
    this.client.on('data', this.forwardToServer);
    this.server.on('data', this.forwardToClient);
  }

  /** The session is over: bytes that still arrive have nowhere to go. */
  stop(): void {
    this.stopped = true;
  }

  /** The client's next message gets this error instead of an answer. */
  retire(message: string): void {
    this.retiredMessage = message;
  }

  /** Between two server messages, where an ErrorResponse can go to the client without corrupting its stream. */
  get serverAtBoundary(): boolean {
    return this.serverScanner.atBoundary;
  }

  /**
   * Ends the session's sockets with an error to the client, written only between two server
   * messages (anywhere else it would corrupt the stream), and a Terminate to the server when the
   * client's stream is between messages too.
   */
  end(error: ErrorFields): void {
    if (this.serverScanner.atBoundary && !this.client.destroyed) endClient(this.client, encodeErrorResponse(error));
    else this.client.destroy();
    if (this.clientScanner.atBoundary) this.server.end(TERMINATE);
    else this.server.destroy();
  }

  private readonly forwardToServer = (chunk: Buffer): void => {
    if (this.stopped) return;
    const scanner = this.clientScanner;
    if (this.retiredMessage !== undefined && scanner.atBoundary) {
      this.events.retired(retiredError(this.retiredMessage));
      return;
    }
    this.counters[Counter.BytesIn] = (this.counters[Counter.BytesIn] ?? 0) + chunk.length;
    try {
      scanner.scan(chunk);
    } catch (error) {
      this.events.clientFailed(error);
      return;
    }
    // Backpressure: stop reading the client while the server has not taken what we gave it.
    if (!this.server.write(chunk)) this.client.pause();
  };

  private readonly forwardToClient = (chunk: Buffer): void => {
    if (this.stopped) return;
    this.counters[Counter.BytesOut] = (this.counters[Counter.BytesOut] ?? 0) + chunk.length;
    try {
      this.serverScanner.scan(chunk);
    } catch (error) {
      this.events.serverBrokeProtocol((error as Error).message);
      return;
    }
    if (!this.client.write(chunk)) this.server.pause();
  };

  private readonly onClientFrame = (type: number): void => {
    if (type === MessageType.Query || type === MessageType.Execute) {
      this.counters[Counter.Queries] = (this.counters[Counter.Queries] ?? 0) + 1;
      this.counters[Counter.LastQueryAt] = Date.now();
    } else if (type === MessageType.Terminate) {
      this.clientTerminated = true;
    }
  };

  private readonly onServerFrame = (type: number): void => {
    this.lastServerType = type;
  };
}

export interface NativeHandOver {
  readonly id: number;
  readonly client: net.Socket;
  readonly server: net.Socket;
  readonly counters: Float64Array;
  /** Bytes read past ReadyForQuery, kept while the corked writes before the hand-over went out. */
  readonly rest: { toClient: Buffer; toServer: Buffer };
  onEnd(end: NativeEnd): void;
  onSearchPath(value: string): void;
}

/**
 * Gives the sockets to the native thread. Still in Node's hands: nothing is lost or reordered,
 * because nothing is read between here and the sockets' destruction (all synchronous) and the
 * bytes already read go with them. Undefined when the thread cannot take them: Node forwards after all.
 */
export function handOverToNative(forwarder: NativeForwarder, session: NativeHandOver, logger: Logger): NativeHandle | undefined {
  try {
    return forwarder.take(session.id, session.client, session.server, session.counters, session.rest, session.onEnd, session.onSearchPath);
  } catch (error) {
    logger.warn({ session: session.id, err: (error as Error).message }, 'the native forwarder could not take the session; forwarding it in Node');
    return undefined;
  }
}
