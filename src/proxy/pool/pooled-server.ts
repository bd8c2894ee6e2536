/**
 * A server connection as the pool holds it: a logged-in ServerSession (opened with its version's
 * search_path, so it never serves another version) plus what the pooled sessions keep about it
 * (its prepared statements, the client it is lent to).
 */
import { ServerSession, type ServerLogin } from '../auth/server-session.js';
import { MAX_MESSAGE_LENGTH } from '../protocol/frames.js';
import type { UpstreamTarget } from '../upstream.js';
import type { ServerConnection, TransactionStatus } from './pool.js';
import type { ParameterValue, TrackedParameters } from './client-parameters.js';
import { ServerStatements } from './prepared.js';

let nextId = 1;

export class PooledServer implements ServerConnection {
  readonly id = nextId++;
  readonly statements: ServerStatements;
  /** The id of the client session it is lent to, for SHOW SERVERS. */
  client: number | undefined;
  /** When it was last lent or given back (ms since the epoch). */
  requestAt = Date.now();
  /**
   * Its values of the tracked parameters the server does not report (client-parameters.ts): from the
   * SETs sent for clients and their own statements; absent when not known (they start at the default).
   */
  readonly unreported: Map<string, ParameterValue>;

  private constructor(
    readonly session: ServerSession,
    maxPreparedStatements: number,
    private readonly tracked: TrackedParameters,
  ) {
    this.statements = new ServerStatements(maxPreparedStatements);
    this.unreported = new Map(tracked.unreported.map((name) => [name, null]));
  }

  static async open(target: UpstreamTarget, login: ServerLogin, maxPreparedStatements: number, tracked: TrackedParameters): Promise<PooledServer> {
    return new PooledServer(await ServerSession.open(target, login, MAX_MESSAGE_LENGTH), maxPreparedStatements, tracked);
  }

  get transactionStatus(): TransactionStatus {
    return this.session.transactionStatus;
  }

  get usable(): boolean {
    return this.session.usable;
  }

  /**
   * The pool's own ROLLBACK (transaction mode) and reset query (session mode, where no prepared
   * statements are tracked: a reset that drops them leaves no record to correct).
   */
  run(sql: string): Promise<void> {
    // A reset query may reset anything; DISCARD ALL (the default) is known to reset everything.
    if (/^\s*discard\s+all\s*;?\s*$/i.test(sql)) for (const name of this.unreported.keys()) this.unreported.set(name, null);
    else if (!/^\s*rollback\s*$/i.test(sql)) this.unreported.clear();
    return this.session.simpleQuery(sql);
  }

  /** Its value of a tracked parameter; undefined when not known. */
  parameter(name: string): ParameterValue | undefined {
    return this.tracked.isReported(name) ? this.session.parameters.get(name) : this.unreported.get(name);
  }

  close(): void {
    this.session.stream(undefined);
    this.session.close();
  }
}
