/**
 * A pooled client in transaction mode forwarded by the native thread (native/forwarder.c, "pooled
 * sessions"): the thread reads the client and holds each request until it is whole; this side lends
 * it a server connection of the client's pool per transaction and takes it back when the thread
 * reports it idle. What needs the proxy's bookkeeping (named statements, statements that may pin or
 * change a tracked parameter, COPY outside a lent connection, a Flush) makes the thread hand the
 * client back between two requests; the session then goes on with PooledForwarding in Node, with
 * the server connection it holds at that moment. So a client that never needs more costs no
 * JavaScript per message, only per transaction.
 */
import net from 'node:net';
import type { NativeEnd, NativeForwarder, NativeHandle, NativePooledEnd } from '../native.js';
import { trackedName, parameterSync, type ParameterValues } from '../pool/client-parameters.js';
import type { Lease, PoolKey } from '../pool/pool.js';
import type { PooledServer } from '../pool/pooled-server.js';
import { encodeErrorResponse, type ErrorFields } from '../protocol/messages.js';
import { retiredError } from './forwarding.js';
import { poolErrorFields, type PooledContext, type PooledEnd } from './pooled.js';

/** What the native pooled forwarding tells the session it belongs to. */
export interface NativePooledEvents {
  ended(reason: PooledEnd | NativeEnd): void;
  /**
   * The thread gave the client back: forward it in Node from here, on `socket`, with `held` (what it
   * sent that was not forwarded) and the server connection it holds, if any.
   */
  handedBack(socket: net.Socket, held: Buffer, lease: Lease<PooledServer> | undefined): void;
}

export class NativePooledForwarding {
  private lease: Lease<PooledServer> | undefined;
  /** The thread was given the lease's descriptor (until it gives it back or ends). */
  private lent = false;
  private readonly waitAbort = new AbortController();
  private stopped = false;
  /** The thread reported the end: the handle names nothing any more. */
  private threadDone = false;
  /** Why the session is ending, when this side decided it (a pool error); the thread reports the rest. */
  private ending: PooledEnd | undefined;
  private takenAt = 0;
  /** As PooledForwarding's, for SHOW CLIENTS and SHOW STATS. */
  waitingSince = 0;
  transactions = 0;
  heldMicros = 0;
  waitedMicros = 0;
  requests = 0;
  requestMicros = 0;
  readonly pinned = undefined;
  readonly preparedStatements = 0;

  private constructor(
    private readonly forwarder: NativeForwarder,
    readonly key: PoolKey,
    private readonly ctx: PooledContext,
    private readonly events: NativePooledEvents,
    private readonly sessionId: number,
    private readonly parameters: ParameterValues,
    private handle: NativeHandle = undefined as unknown as NativeHandle,
  ) {}

  /** Hands the client to the thread, or returns undefined when it cannot take it (forward in Node). */
  static start(
    forwarder: NativeForwarder,
    client: net.Socket,
    key: PoolKey,
    ctx: PooledContext,
    counters: Float64Array,
    events: NativePooledEvents,
    sessionId: number,
    parameters: ParameterValues,
    held: Buffer,
  ): NativePooledForwarding | undefined {
    const forwarding = new NativePooledForwarding(forwarder, key, ctx, events, sessionId, parameters);
    const handle = forwarder.takePooled(sessionId, client, counters, held, forwarding.threadEvents, forwarding.onEnd);
    if (!handle) return undefined;
    forwarding.handle = handle;
    return forwarding;
  }

  /** The server connection the client holds now, if any. */
  get server(): PooledServer | undefined {
    return this.lease?.connection;
  }

  /** The client's next request outside a transaction gets this error (the thread applies it). */
  retire(message: string): void {
    if (!this.threadDone) this.forwarder.retire(this.handle, encodeErrorResponse(retiredError(message)));
  }

  /** Ends the session with an error to the client where its stream allows one; the thread reports the end. */
  end(error: ErrorFields | undefined): void {
    if (!this.threadDone) this.forwarder.terminate(this.handle, error ? encodeErrorResponse(error) : Buffer.alloc(0));
    this.stop();
  }

  /** The session is over on the proxy's side: a wait for a connection stops, the thread ends it. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.waitAbort.abort();
    if (!this.threadDone) this.forwarder.terminate(this.handle, Buffer.alloc(0));
  }

  private readonly threadEvents = {
    want: (): void => this.borrow(),
    givenBack: (requests: number, requestMicros: number): void => {
      this.countRequests(requests, requestMicros);
      this.giveBack('I', true);
    },
    parameter: (name: string, value: string): void => {
      const tracked = trackedName(name);
      if (tracked) this.parameters.set(tracked, value);
      this.lease?.connection.session.noteReported(name, value);
    },
  };

  private borrow(): void {
    this.waitingSince = Date.now();
    this.ctx.pools.acquire(this.key, this.waitAbort.signal).then(
      (lease) => {
        this.waitedMicros += (Date.now() - this.waitingSince) * 1000;
        this.waitingSince = 0;
        if (this.stopped || this.threadDone) {
          lease.release();
          return;
        }
        this.lease = lease;
        this.transactions++;
        this.takenAt = performance.now();
        const server = lease.connection;
        server.client = this.sessionId;
        server.requestAt = Date.now();
        // A connection whose parameters differ from the client's needs a SET first, which Node
        // sends and reads (PooledForwarding): the client goes back to Node with the lease.
        const fd = parameterSync(this.parameters, (name) => server.parameter(name)) ? undefined : server.session.lendDescriptor();
        if (fd === undefined) {
          this.forwarder.handBack(this.handle);
          return;
        }
        this.lent = true;
        try {
          this.forwarder.lend(this.handle, fd);
        } catch (error) {
          this.ctx.logger.warn({ session: this.sessionId, err: (error as Error).message }, 'could not lend a server connection to the native forwarder; forwarding the client in Node');
          this.lent = false;
          server.session.takeBack('I');
          this.forwarder.handBack(this.handle);
        }
      },
      (error: unknown) => {
        this.waitingSince = 0;
        if (this.stopped || this.threadDone) return;
        const fields = poolErrorFields(error);
        this.ending = { kind: 'pool_error', error: fields };
        this.forwarder.terminate(this.handle, encodeErrorResponse(fields));
      },
    );
  }

  private countRequests(requests: number, micros: number): void {
    this.requests += requests;
    this.requestMicros += Math.round(micros);
  }

  /** Node reads the lease's connection again; `release`: it goes back to the pool (else it stays the client's). */
  private giveBack(status: 'I' | 'T' | 'E', release: boolean, broken = false): Lease<PooledServer> | undefined {
    const lease = this.lease;
    if (!lease) return undefined;
    if (this.lent) lease.connection.session.takeBack(status);
    this.lent = false;
    if (!release) return lease;
    this.lease = undefined;
    this.heldMicros += Math.round((performance.now() - this.takenAt) * 1000);
    lease.connection.client = undefined;
    lease.connection.requestAt = Date.now();
    // A transaction left open is rolled back by the pool; one mid-answer is closed.
    lease.release({ broken });
    return undefined;
  }

  private readonly onEnd = (end: NativeEnd): void => {
    const pooled: NativePooledEnd | undefined = end.pooled;
    if (pooled) this.countRequests(pooled.requests, pooled.requestMicros);
    this.threadDone = true;
    this.stopped = true;
    this.waitAbort.abort();
    if (end.reason === 'handed_back' && pooled?.fd !== undefined) {
      // The lease (lent or not) stays the client's: Node forwards it from here.
      const lease = this.giveBack(pooled.status, false);
      this.lease = undefined;
      if (lease) lease.connection.client = this.sessionId;
      this.events.handedBack(new net.Socket({ fd: pooled.fd, readable: true, writable: true }), pooled.held ?? Buffer.alloc(0), lease);
      return;
    }
    // Lent: the thread says whether it is between requests. Lent but not used (the end came first): clean.
    const clean = pooled?.lent ? pooled.clean : true;
    this.giveBack(pooled?.lent ? pooled.status : 'I', true, !clean);
    this.events.ended(this.ending ?? end);
  };
}
