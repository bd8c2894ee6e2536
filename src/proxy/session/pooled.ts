/**
 * A logged-in client served from a pool (`--pool-mode session|transaction`): the client's messages
 * are read whole; a server connection of the client's pool (database, user, version) is borrowed
 * when the client has something to send and, in transaction mode, given back at the ReadyForQuery
 * that leaves it idle with nothing outstanding. Prepared statements move with the client
 * (pool/prepared.ts); what cannot be pooled per transaction pins the client to its connection
 * (pool/pinning.ts). A server connection never changes version: it was opened with its version's
 * search_path, so nothing is SET on checkout.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../../observe/logger.js';
import type { AuthType, ServerCredentials } from '../auth/client-auth.js';
import { KeptPasswordRefusedError } from '../auth/passthrough.js';
import type { Secret } from '../auth/secret.js';
import { Counter } from '../native.js';
import { pinningOf, type Pinning } from '../pool/pinning.js';
import { PoolError, type Lease, type PoolKey, type Pools } from '../pool/pool.js';
import type { PooledServer } from '../pool/pooled-server.js';
import { PreparedStatements, type FrameSink } from '../pool/prepared.js';
import { FrameReader, MAX_MESSAGE_LENGTH, ProtocolError, type TypedFrame } from '../protocol/frames.js';
import { MessageType, SERVER_CLOSED_UNEXPECTEDLY, encodeErrorResponse, type ErrorFields } from '../protocol/messages.js';
import { endClient } from './client.js';
import { retiredError } from './forwarding.js';

export type PoolMode = 'session' | 'transaction';

/** What a pooled session needs from the proxy around it. */
export interface PooledContext {
  readonly mode: PoolMode;
  readonly pools: Pools<PooledServer>;
  /** 0: never. A client idle inside a transaction this long is disconnected (PgBouncer's idle_transaction_timeout). */
  readonly idleTransactionTimeoutMs: number;
  readonly logger: Logger;
  pinned(pinning: Pinning): void;
}

/** What the pooled forwarding tells the session it belongs to. */
export interface PooledEvents {
  /** The session is over; `error` went to the client where the stream allowed one. */
  ended(reason: PooledEnd): void;
}

export type PooledEnd =
  | { kind: 'client_closed' }
  | { kind: 'client_protocol_violation'; error: ErrorFields }
  | { kind: 'server_closed' }
  | { kind: 'server_protocol_violation'; detail: string }
  | { kind: 'retired_version' }
  | { kind: 'pool_error'; error: ErrorFields }
  | { kind: 'idle_transaction_timeout'; error: ErrorFields };

export class PooledForwarding {
  private readonly reader = new FrameReader(MAX_MESSAGE_LENGTH);
  private readonly prepared: PreparedStatements | undefined;
  private lease: Lease<PooledServer> | undefined;
  /** Messages that arrived while a server connection was being borrowed. */
  private backlog: TypedFrame[] | undefined;
  private readonly waitAbort = new AbortController();
  private pinning: Pinning | undefined;
  private retiredMessage: string | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** When the client started waiting for a server connection (0: not waiting), for SHOW CLIENTS. */
  waitingSince = 0;
  /** Server connections borrowed (transactions, in transaction mode), and time held and waited for them (µs): SHOW STATS. */
  transactions = 0;
  heldMicros = 0;
  waitedMicros = 0;
  private takenAt = 0;
  private readonly sink: FrameSink;

  constructor(
    private readonly client: net.Socket | tls.TLSSocket,
    readonly key: PoolKey,
    private readonly ctx: PooledContext,
    private readonly counters: Float64Array,
    private readonly events: PooledEvents,
    /** The connection borrowed for the welcome (session mode keeps it for the whole session). */
    welcomeLease: Lease<PooledServer> | undefined,
    private readonly sessionId: number,
  ) {
    this.prepared = ctx.mode === 'transaction' ? new PreparedStatements() : undefined;
    this.sink = {
      server: (frame) => this.toServer(frame),
      client: (frame) => this.toClient(frame),
    };
    if (welcomeLease) this.take(welcomeLease);
  }

  /** Starts reading the client (with what it sent after its login). */
  start(rest: Buffer): void {
    this.client.on('data', this.onClientData);
    this.client.on('drain', this.resumeServer);
    if (rest.length > 0) this.onClientData(rest);
  }

  /** The server connection the client holds now, if any. */
  get server(): PooledServer | undefined {
    return this.lease?.connection;
  }

  get pinned(): Pinning | undefined {
    return this.pinning;
  }

  get preparedStatements(): number {
    return this.prepared?.names.length ?? 0;
  }

  /** The client's next message gets this error, unless it is inside a transaction, which may finish. */
  retire(message: string): void {
    this.retiredMessage = message;
  }

  /** Ends with an error to the client and gives the connection back. */
  end(error: ErrorFields | undefined): void {
    if (this.stopped) return;
    // Server messages reach the client whole, so an error always lands between two of them.
    if (error && !this.client.destroyed) endClient(this.client, encodeErrorResponse(error));
    else this.client.destroy();
    this.stop();
  }

  /** Gives the server connection back (rolled back, or closed when it is mid-answer) and stops. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.idleTimer);
    this.waitAbort.abort();
    this.client.removeListener('data', this.onClientData);
    this.client.removeListener('drain', this.resumeServer);
    this.giveBack(true);
  }

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.stopped) return;
    this.counters[Counter.BytesIn] = (this.counters[Counter.BytesIn] ?? 0) + chunk.length;
    this.reader.push(chunk);
    // One write to the server for all the messages of this read, not one per message.
    const server = this.lease?.connection.session.connection;
    server?.cork();
    try {
      let frame: TypedFrame | undefined;
      while (!this.stopped && (frame = this.reader.nextTyped())) this.fromClient(frame);
    } catch (error) {
      const message = error instanceof ProtocolError ? error.message : (error as Error).message;
      const code = error instanceof ProtocolError ? error.code : 'XX000';
      this.finish({ kind: 'client_protocol_violation', error: { severity: 'FATAL', code, message } }, true);
    } finally {
      server?.uncork();
    }
  };

  private fromClient(frame: TypedFrame): void {
    const type = frame.type;
    if (type === MessageType.Terminate) {
      this.client.end();
      this.finish({ kind: 'client_closed' }, false);
      return;
    }
    if (type === MessageType.Query || type === MessageType.Execute) {
      this.counters[Counter.Queries] = (this.counters[Counter.Queries] ?? 0) + 1;
      this.counters[Counter.LastQueryAt] = Date.now();
    }
    clearTimeout(this.idleTimer);
    if (this.backlog) {
      this.backlog.push(frame);
      return;
    }
    // A retired version's client may finish its transaction; its next one is refused. (Session mode
    // and pinned clients hold their connection between transactions: the same rule applies.)
    if (this.retiredMessage !== undefined && this.betweenTransactions()) {
      this.finish({ kind: 'retired_version' }, true, retiredError(this.retiredMessage));
      return;
    }
    if (!this.lease) {
      this.backlog = [frame];
      this.borrow();
      return;
    }
    this.forward(frame);
  }

  private forward(frame: TypedFrame): void {
    if (this.ctx.mode === 'transaction' && !this.pinning && (frame.type === MessageType.Query || frame.type === MessageType.Parse)) {
      const sql = frame.type === MessageType.Query ? queryText(frame.body, 0) : queryText(frame.body, frame.body.indexOf(0) + 1);
      const pinning = pinningOf(sql);
      if (pinning) {
        this.pinning = pinning;
        this.ctx.pinned(pinning);
      }
    }
    if (this.prepared) this.prepared.fromClient(frame, this.sink);
    else this.toServer(frame.frame);
  }

  private betweenTransactions(): boolean {
    const lease = this.lease;
    return !lease || (lease.connection.transactionStatus === 'I' && !this.serverBusy && (this.prepared?.idle ?? true));
  }

  private borrow(): void {
    this.waitingSince = Date.now();
    this.ctx.pools.acquire(this.key, this.waitAbort.signal).then(
      (lease) => {
        this.waitedMicros += (Date.now() - this.waitingSince) * 1000;
        this.waitingSince = 0;
        if (this.stopped) {
          lease.release();
          return;
        }
        this.take(lease);
        const backlog = this.backlog ?? [];
        this.backlog = undefined;
        for (const frame of backlog) {
          if (this.stopped) return;
          this.forward(frame);
        }
      },
      (error: unknown) => {
        this.waitingSince = 0;
        if (this.stopped) return;
        const fields = noServerConnection(error);
        this.backlog = undefined;
        this.finish({ kind: 'pool_error', error: fields }, true, fields);
      },
    );
  }

  private take(lease: Lease<PooledServer>): void {
    this.lease = lease;
    this.transactions++;
    this.takenAt = performance.now();
    const server = lease.connection;
    server.client = this.sessionId;
    server.requestAt = Date.now();
    this.prepared?.attach(server.statements);
    server.session.stream(this.fromServer, this.serverBatchEnd);
    server.session.connection.on('close', this.onServerClose);
    server.session.connection.on('drain', this.resumeClient);
  }

  private clientCorked = false;

  /** After the messages of one read from the server: they go to the client in one write. */
  private readonly serverBatchEnd = (): void => {
    if (!this.clientCorked) return;
    this.clientCorked = false;
    this.client.uncork();
  };

  private readonly fromServer = (frame: TypedFrame): void => {
    if (this.stopped) return;
    if (!this.clientCorked) {
      this.clientCorked = true;
      this.client.cork();
    }
    this.counters[Counter.BytesOut] = (this.counters[Counter.BytesOut] ?? 0) + frame.frame.length;
    try {
      if (this.prepared) this.prepared.fromServer(frame, this.sink);
      else this.toClient(frame.frame);
    } catch (error) {
      this.finish({ kind: 'server_protocol_violation', detail: (error as Error).message }, false);
      return;
    }
    if (frame.type === MessageType.CommandComplete && forgetsPreparedStatements(frame.body)) this.lease?.connection.statements.clear();
    if (frame.type !== MessageType.ReadyForQuery) return;
    const status = this.lease?.connection.transactionStatus;
    if (status !== 'I') {
      this.startIdleTimer();
      return;
    }
    if (this.ctx.mode === 'transaction' && !this.pinning && this.prepared!.idle) this.giveBack(false);
  };

  /** Back to the pool: rolled back when left in a transaction, closed when replies are outstanding. */
  private giveBack(ending: boolean): void {
    const lease = this.lease;
    if (!lease) return;
    this.lease = undefined;
    this.heldMicros += Math.round((performance.now() - this.takenAt) * 1000);
    const server = lease.connection;
    server.session.stream(undefined);
    // The batch that brought the ReadyForQuery ends without us now: what it wrote goes out here.
    this.serverBatchEnd();
    server.session.connection.removeListener('close', this.onServerClose);
    server.session.connection.removeListener('drain', this.resumeClient);
    server.client = undefined;
    server.requestAt = Date.now();
    // The client may have paused the server's socket (backpressure) on its way out.
    server.session.connection.resume();
    const outstanding = this.prepared ? !this.prepared.idle : this.serverBusy;
    if (this.prepared && this.prepared.idle) this.prepared.detach();
    lease.release({ broken: outstanding, reset: ending && this.ctx.mode === 'session' });
  }

  /**
   * Something went to the server since its last ReadyForQuery reached the client: a connection given
   * back now would be mid-answer (closed, never reused).
   */
  private serverBusy = false;

  private toServer(frame: Buffer): void {
    const lease = this.lease;
    if (!lease) return;
    this.serverBusy = true;
    if (!lease.connection.session.write(frame)) this.client.pause();
  }

  private toClient(frame: Buffer): void {
    if (frame[0] === MessageType.ReadyForQuery) this.serverBusy = false;
    if (!this.client.write(frame)) this.lease?.connection.session.connection.pause();
  }

  private readonly resumeServer = (): void => {
    this.lease?.connection.session.connection.resume();
  };

  private readonly resumeClient = (): void => {
    if (!this.stopped) this.client.resume();
  };

  private readonly onServerClose = (): void => {
    if (this.stopped) return;
    this.finish({ kind: 'server_closed' }, true, SERVER_CLOSED_UNEXPECTEDLY);
  };

  private startIdleTimer(): void {
    const ms = this.ctx.idleTransactionTimeoutMs;
    if (ms <= 0) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      const error: ErrorFields = { severity: 'FATAL', code: '25P03', message: `terminating connection: idle in transaction for longer than ${ms} ms (--idle-transaction-timeout)` };
      this.finish({ kind: 'idle_transaction_timeout', error }, true, error);
    }, ms);
    this.idleTimer.unref();
  }

  private finish(reason: PooledEnd, tell: boolean, error?: ErrorFields): void {
    if (this.stopped) return;
    if (tell) this.end(error);
    else this.stop();
    this.events.ended(reason);
  }
}

const DISCARD_ALL = Buffer.from('DISCARD ALL\0');
const DEALLOCATE_ALL = Buffer.from('DEALLOCATE ALL\0');

/**
 * The command tag of a `DISCARD ALL` or `DEALLOCATE ALL` the client ran: the server connection holds
 * no prepared statement any more, so the record of what it holds must say so (the tag, not the
 * statement, because a DISCARD ALL refused inside a transaction block forgets nothing).
 */
function forgetsPreparedStatements(tag: Buffer): boolean {
  return (tag.length === DISCARD_ALL.length && tag.equals(DISCARD_ALL)) || (tag.length === DEALLOCATE_ALL.length && tag.equals(DEALLOCATE_ALL));
}

/** What a client that gets no server connection is told. */
export function noServerConnection(error: unknown): ErrorFields {
  if (!(error instanceof PoolError)) return { severity: 'FATAL', code: 'XX000', message: `the tandem proxy could not get a server connection: ${(error as Error).message}` };
  // Passthrough: the server refused the password the pool logs in with; its words say why.
  if (error.cause instanceof KeptPasswordRefusedError) return error.cause.error;
  const hint = error.reason === 'query_wait_timeout' ? { hint: 'The pool is too small for the load, or its connections are held by long transactions (see SHOW POOLS on the admin console).' } : {};
  return { severity: 'FATAL', code: error.code, message: error.message, ...hint };
}

function queryText(body: Buffer, from: number): string {
  const end = body.indexOf(0, from);
  return body.toString('utf8', from, end < 0 ? body.length : end);
}

/** What a session needs to log a client in to a pool (the proxy around it implements it). */
export interface Pooling extends PooledContext {
  readonly authType: AuthType;
  /** The user's stored secret (auth file, then auth query); undefined for an unknown user or no password. */
  secretOf(user: string): Promise<Secret | undefined>;
  /**
   * Passthrough: the server's refusal of `password` for `user`, or undefined when it accepts it;
   * `key`: the pool the client will use, which the server connection of the check may join.
   */
  checkPassword(user: string, password: string, key: PoolKey | undefined): Promise<ErrorFields | undefined>;
  /** The pool a logged-in client uses; remembers how its server connections log in. */
  poolFor(database: string, user: string, version: string, searchPath: string | undefined, credentials: ServerCredentials): PoolKey;
  /** The ParameterStatus frames of the pool's server connections, once one has been opened. */
  welcome(key: PoolKey): readonly Buffer[] | undefined;
}
