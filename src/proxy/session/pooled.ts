/**
 * A logged-in client served from a pool (`--pool-mode session|transaction`): the client's messages
 * are read whole; a server connection of the client's pool (database, user, version) is borrowed
 * when the client has something to send and, in transaction mode, given back at the ReadyForQuery
 * that leaves it idle with nothing outstanding. Prepared statements move with the client
 * (pool/prepared.ts); what cannot be pooled per transaction pins the client to its connection
 * (pool/pinning.ts). A server connection never changes version: it was opened with its version's
 * search_path, which is never SET. The client's own session parameters are (pool/client-parameters.ts):
 * a connection it gets is brought to its values before its first message goes out.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../../observe/logger.js';
import type { AuthType, ServerCredentials } from '../auth/client-auth.js';
import { KeptPasswordRefusedError } from '../auth/passthrough.js';
import { ServerError } from '../auth/server-session.js';
import type { Secret } from '../auth/secret.js';
import { Counter } from '../native.js';
import { parameterSync, type ParameterValues, type TrackedParameters } from '../pool/client-parameters.js';
import { effectsOf, type Pinning, type TrackedSetting } from '../pool/pinning.js';
import { PoolError, type Lease, type PoolKey, type Pools } from '../pool/pool.js';
import type { PooledServer } from '../pool/pooled-server.js';
import { PreparedStatements, type FrameSink } from '../pool/prepared.js';
import { FrameReader, MAX_MESSAGE_LENGTH, ProtocolError, type TypedFrame } from '../protocol/frames.js';
import { MessageType, SERVER_CLOSED_UNEXPECTEDLY, encodeErrorResponse, encodeMessage, parseErrorFields, parseParameterStatus, type ErrorFields } from '../protocol/messages.js';
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
  /** The parameters clients carry: the standard set and --track-extra-parameters. */
  readonly tracked: TrackedParameters;
  pinned(pinning: Pinning): void;
}

/** What the pooled forwarding tells the session it belongs to. */
export interface PooledEvents {
  /** The session is over; `error` went to the client where the stream allowed one. */
  ended(reason: PooledEnd): void;
  /**
   * Transaction mode: the client gave its server connection back and nothing of it is pending
   * (`movable`); the session may hand it to the native thread from here.
   */
  betweenTransactions?(): void;
}

export type PooledEnd =
  | { kind: 'client_closed' }
  | { kind: 'client_protocol_violation'; error: ErrorFields }
  | { kind: 'server_closed' }
  | { kind: 'server_protocol_violation'; detail: string }
  | { kind: 'retired_version' }
  | { kind: 'pool_error'; error: ErrorFields }
  /** The server refused to take the client's parameters (an invalid value it asked for at login). */
  | { kind: 'parameters_refused'; error: ErrorFields }
  | { kind: 'idle_transaction_timeout'; error: ErrorFields };

/** The Query of SETs that brings a lent connection to the client's parameters, under way. */
interface ParameterSync {
  names: string[];
  error: ErrorFields | undefined;
}

/**
 * Unreported tracked settings (extra_float_digits) the client changed in the transaction under way:
 * recorded when it commits; `spoiled` once an error or a rollback makes that uncertain.
 */
interface PendingSettings {
  settings: TrackedSetting[];
  spoiled: boolean;
}

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
  /**
   * SHOW STATS: server connections borrowed (transactions, in transaction mode), time held and
   * waited for them, and requests (from what the client sent to the server's next ReadyForQuery)
   * and the time the server took to answer them, in µs.
   */
  transactions = 0;
  heldMicros = 0;
  waitedMicros = 0;
  requests = 0;
  requestMicros = 0;
  private requestSentAt = 0;
  private takenAt = 0;
  private readonly sink: FrameSink;
  private syncing: ParameterSync | undefined;
  private pendingSettings: PendingSettings | undefined;

  constructor(
    private readonly client: net.Socket | tls.TLSSocket,
    readonly key: PoolKey,
    private readonly ctx: PooledContext,
    private readonly counters: Float64Array,
    private readonly events: PooledEvents,
    /** The connection borrowed for the welcome (session mode keeps it for the whole session). */
    welcomeLease: Lease<PooledServer> | undefined,
    private readonly sessionId: number,
    /** The client's values of the tracked parameters, kept up to date with what it sets. */
    readonly parameters: ParameterValues,
    /** Named statements the client prepared while the native thread forwarded it (PreparedStatements.adopt). */
    statements?: Buffer,
  ) {
    this.prepared = ctx.mode === 'transaction' ? new PreparedStatements() : undefined;
    if (statements && statements.length > 0 && this.prepared) {
      this.prepared.adopt(statements);
      ctx.logger.debug({ session: sessionId, statements: this.prepared.names.length }, 'goes on in Node with the named statements the native thread kept for it');
    }
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

  /**
   * Nothing of the client is in Node's hands: no server connection, no named statement, no bytes
   * read and not yet forwarded, nothing that pins it or waits to be recorded. Another forwarder may
   * take the client from here (after `stop`) and lose nothing.
   */
  get movable(): boolean {
    return (
      !this.stopped &&
      !this.lease &&
      !this.pinning &&
      this.retiredMessage === undefined &&
      !this.backlog &&
      !this.syncing &&
      !this.pendingSettings &&
      this.reader.pending === 0 &&
      (this.prepared?.names.length ?? 0) === 0
    );
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
      const { pinning, settings } = effectsOf(sql, this.ctx.tracked);
      if (pinning) {
        this.pinning = pinning;
        this.ctx.pinned(pinning);
      } else if (settings.length > 0) {
        this.pendingSettings = { settings: [...(this.pendingSettings?.settings ?? []), ...settings], spoiled: this.pendingSettings?.spoiled ?? false };
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
        if (!this.syncing) this.forwardBacklog();
      },
      (error: unknown) => {
        this.waitingSince = 0;
        if (this.stopped) return;
        const fields = poolErrorFields(error);
        this.backlog = undefined;
        this.finish({ kind: 'pool_error', error: fields }, true, fields);
      },
    );
  }

  /** Messages that waited for a server connection (and its parameters) go out, in order. */
  private forwardBacklog(): void {
    const backlog = this.backlog ?? [];
    this.backlog = undefined;
    for (const frame of backlog) {
      if (this.stopped) return;
      this.forward(frame);
    }
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
    const sync = parameterSync(this.parameters, (name) => server.parameter(name));
    if (!sync) return;
    // The client's messages wait until the server has taken its parameters; their answers it never sees.
    this.syncing = { names: sync.names, error: undefined };
    this.backlog ??= [];
    server.session.write(encodeMessage(MessageType.Query, Buffer.from(`${sync.sql}\0`, 'utf8')));
  }

  /** An answer to the parameters' Query: swallowed; at its ReadyForQuery the client's messages go. */
  private syncAnswer(sync: ParameterSync, frame: TypedFrame): void {
    if (frame.type === MessageType.ErrorResponse) {
      // The server's words; FATAL, because the session ends here.
      sync.error = { ...new ServerError(parseErrorFields(frame.body)).errorFields, severity: 'FATAL' };
      return;
    }
    if (frame.type !== MessageType.ReadyForQuery) return;
    this.syncing = undefined;
    const server = this.lease!.connection;
    for (const name of sync.names) {
      if (sync.error) {
        // Rolled back as one implicit transaction: the reported values say so, the others are not known.
        if (!this.ctx.tracked.isReported(name)) server.unreported.delete(name);
      } else if (this.ctx.tracked.isReported(name)) {
        // The server's spelling ('ISO, MDY' for 'iso'): compared as such at the next checkout.
        const value = server.parameter(name);
        if (value !== undefined) this.parameters.set(name, value);
      } else server.unreported.set(name, this.parameters.get(name) ?? null);
    }
    if (sync.error) {
      this.backlog = undefined;
      this.finish({ kind: 'parameters_refused', error: sync.error }, true, sync.error);
      return;
    }
    this.forwardBacklog();
  }

  /** Keeps the client's values in step with what its statements did to the server session. */
  private noteSession(frame: TypedFrame): void {
    if (frame.type === MessageType.ParameterStatus) {
      const { name, value } = parseParameterStatus(frame.body);
      const tracked = this.ctx.tracked.trackedName(name);
      if (tracked) this.parameters.set(tracked, value);
      return;
    }
    const pending = this.pendingSettings;
    if (!pending) return;
    if (frame.type === MessageType.ErrorResponse || (frame.type === MessageType.CommandComplete && isRollback(frame.body))) pending.spoiled = true;
    else if (frame.type === MessageType.ReadyForQuery && this.lease?.connection.transactionStatus === 'I') {
      this.pendingSettings = undefined;
      const server = this.lease.connection;
      for (const { name, value } of pending.settings) {
        if (pending.spoiled) server.unreported.delete(name);
        else {
          server.unreported.set(name, value);
          this.parameters.set(name, value);
        }
      }
    }
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
    if (this.syncing) {
      this.syncAnswer(this.syncing, frame);
      return;
    }
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
    this.noteSession(frame);
    if (frame.type !== MessageType.ReadyForQuery) return;
    const status = this.lease?.connection.transactionStatus;
    if (status !== 'I') {
      this.startIdleTimer();
      return;
    }
    if (this.ctx.mode === 'transaction' && !this.pinning && this.prepared!.idle) {
      this.giveBack(false);
      if (this.movable) this.events.betweenTransactions?.();
    }
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
    // A pinned client's statements are not read, and a parameters' Query or a transaction cut short
    // leaves them unsettled: what the unreported parameters are is not known.
    const wasSyncing = this.syncing !== undefined;
    if (this.pinning || wasSyncing || this.pendingSettings) server.unreported.clear();
    this.syncing = undefined;
    this.pendingSettings = undefined;
    // The client may have paused the server's socket (backpressure) on its way out.
    server.session.connection.resume();
    const outstanding = (this.prepared ? !this.prepared.idle : this.serverBusy) || wasSyncing;
    if (this.prepared && this.prepared.idle) this.prepared.detach();
    // A pinned client's connection holds the session state that pinned it (a SET, a temporary table,
    // a LISTEN, a session lock): no other client may inherit it, and the reset query is session
    // mode's, so it is closed.
    const dirty = this.pinning !== undefined && this.ctx.mode === 'transaction';
    lease.release({ broken: outstanding || dirty, reset: ending && this.ctx.mode === 'session' });
  }

  /**
   * Something went to the server since its last ReadyForQuery reached the client: a connection given
   * back now would be mid-answer (closed, never reused).
   */
  private serverBusy = false;

  private toServer(frame: Buffer): void {
    const lease = this.lease;
    if (!lease) return;
    if (!this.serverBusy) {
      this.serverBusy = true;
      this.requestSentAt = performance.now();
    }
    if (!lease.connection.session.write(frame)) this.client.pause();
  }

  private toClient(frame: Buffer): void {
    if (frame[0] === MessageType.ReadyForQuery && this.serverBusy) {
      this.serverBusy = false;
      this.requests++;
      this.requestMicros += Math.round((performance.now() - this.requestSentAt) * 1000);
    }
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

  /** The client's value of a carried parameter now (SHOW CLIENTS' application_name). */
  parameter(name: string): string | undefined {
    return this.parameters.get(name) ?? undefined;
  }
}

/** How a client is told it got no server connection. */
export function poolErrorFields(error: unknown): ErrorFields {
  if (!(error instanceof PoolError)) return { severity: 'FATAL', code: 'XX000', message: `the tandem proxy could not get a server connection: ${(error as Error).message}` };
  // Passthrough: the server refused the password the pool logs in with; its words say why.
  if (error.cause instanceof KeptPasswordRefusedError) return error.cause.error;
  const hint = error.reason === 'query_wait_timeout' ? 'The pool is too small for the load, or its connections are held by long transactions (see SHOW POOLS on the admin console).' : undefined;
  return { severity: 'FATAL', code: error.code, message: error.message, ...(hint ? { hint } : {}) };
}

/** CommandComplete bodies (the tag and its terminator) the session reads. */
const ROLLBACK = Buffer.from('ROLLBACK\0');
const DISCARD_ALL = Buffer.from('DISCARD ALL\0');
const DEALLOCATE_ALL = Buffer.from('DEALLOCATE ALL\0');

/** A transaction (or a savepoint's part of it) was rolled back: what it set is gone or uncertain. */
function isRollback(tag: Buffer): boolean {
  return tag.equals(ROLLBACK);
}

/**
 * The command tag of a `DISCARD ALL` or `DEALLOCATE ALL` the client ran: the server connection holds
 * no prepared statement any more, so the record of what it holds must say so (the tag, not the
 * statement, because a DISCARD ALL refused inside a transaction block forgets nothing).
 */
function forgetsPreparedStatements(tag: Buffer): boolean {
  return tag.equals(DISCARD_ALL) || tag.equals(DEALLOCATE_ALL);
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
  /** Startup parameters (lower case) dropped instead of refused: --ignore-startup-parameters. */
  readonly ignoredStartupParameters: ReadonlySet<string>;
  /** The ParameterStatus frames of the pool's server connections, once one has been opened. */
  welcome(key: PoolKey): readonly Buffer[] | undefined;
  /** Why a client that authenticated may not use `database` now (DISABLE); undefined when it may. */
  loginRefusal(database: string): ErrorFields | undefined;
}
