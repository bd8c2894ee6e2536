/**
 * What the admin console reads and drives: the proxy's pools, connections and figures as plain rows,
 * and the commands that act on them. The console only formats and dispatches; the proxy implements
 * this interface over its live state, so the console is testable with rows built by hand.
 *
 * Each row type has one field per column the console prints (the column's name is in each field's
 * comment, PgBouncer's where PgBouncer has that column), plus the version a pool or connection is
 * routed to, which PgBouncer does not have.
 */

export type PoolMode = 'session' | 'transaction' | 'statement';

/** One row of SHOW POOLS: one pool, per (database, user, version). */
export interface AdminPoolRow {
  database: string;
  user: string;
  /** `version`: the version schema the pool's connections start their search_path with; '' for the server's default path. */
  version: string;
  /** `cl_active`: clients linked to a server connection, or idle with nothing waiting to run. */
  clientsActive: number;
  /** `cl_waiting`: clients that have sent a query and wait for a server connection. */
  clientsWaiting: number;
  /** `sv_active`: server connections linked to a client. */
  serversActive: number;
  /** `sv_idle`: server connections ready for the next client. */
  serversIdle: number;
  /** `sv_used`: server connections back from a client and not yet ready (being rolled back). */
  serversUsed: number;
  /** `sv_tested`: server connections running the reset query (`server_reset_query`). */
  serversTested: number;
  /** `sv_login`: server connections being opened (connecting, logging in). */
  serversLogin: number;
  /** `maxwait` (whole seconds) and `maxwait_us` (the microseconds past them): how long the oldest waiting client has waited, in ms. */
  maxWaitMs: number;
  /** `pool_mode` */
  poolMode: PoolMode;
  /** `paused`: PAUSE (of this database or of all) or KILL holds its clients until RESUME. Printed 1 or 0, as PgBouncer's SHOW DATABASES. */
  paused: boolean;
}

/** What SHOW CLIENTS and SHOW SERVERS have in common, in that order of columns. */
export interface AdminConnectionRow {
  user: string;
  database: string;
  /** `version`: as AdminPoolRow.version. */
  version: string;
  /** `addr`, `port`: the peer's address (the client's, or the PostgreSQL server's). */
  addr: string;
  port: number;
  /** `local_addr`, `local_port`: the proxy's end of the socket. */
  localAddr: string;
  localPort: number;
  /** `connect_time` */
  connectTime: Date;
  /** `request_time`: the last query sent (by the client, or to the server); NULL before the first. */
  requestTime: Date | undefined;
  /** `link`: the id of the connection it is paired with (its server, its client); NULL when unpaired. */
  link: number | undefined;
  /** `tls`: the TLS protocol and cipher, '' without TLS. */
  tls: string;
  /** `application_name`: the client's (a server's: its linked client's), '' when not set. */
  applicationName: string;
  /** `prepared_statements`: protocol-level prepared statements the connection holds. */
  preparedStatements: number;
  /** `id`: unique among the proxy's clients, and among its servers. */
  id: number;
}

/** One row of SHOW CLIENTS (`type` C). */
export interface AdminClientRow extends AdminConnectionRow {
  /** `state`: `active` (has a server connection, or nothing to run), `waiting` (for a server connection), `idle`. */
  state: 'active' | 'idle' | 'waiting';
  /** `wait` (whole seconds) and `wait_us` (the microseconds past them): how long it has waited for a server connection, in ms; 0 unless waiting. */
  waitMs: number;
  /** `pinned`: why the client keeps its server connection past its transactions (a PinReason), '' when it does not. */
  pinned: string;
}

/** One row of SHOW SERVERS (`type` S). */
export interface AdminServerRow extends AdminConnectionRow {
  /** `state`: as AdminPoolRow's sv_ counts. */
  state: 'active' | 'idle' | 'used' | 'tested' | 'login';
  /** `remote_pid`: the backend's process id, from its BackendKeyData (0 before it is known). */
  remotePid: number;
  /** `close_needed`: RECONNECT marked it; it is closed as soon as its client gives it back. Printed 1 or 0. */
  closeNeeded: boolean;
}

/** One row of SHOW DATABASES: a database the proxy knows (it has versions or pools). */
export interface AdminDatabaseRow {
  /** `name`: as clients name it. */
  name: string;
  /** `host`, `port`: the upstream's (`unix` and 0 for a socket). */
  host: string;
  port: number;
  /** `database`: the server's name for it (the same: tandem does not rename databases). */
  database: string;
  /** `pool_size`, `min_pool_size`, `reserve_pool_size` (PgBouncer 1.24's name), `server_lifetime` (seconds). */
  poolSize: number;
  minPoolSize: number;
  reservePoolSize: number;
  serverLifetimeSeconds: number;
  /** `pool_mode` */
  poolMode: PoolMode;
  /** `max_connections`: max_db_connections (0: no limit); `current_connections`: its server connections, open and opening. */
  maxConnections: number;
  currentConnections: number;
  /** `current_client_connections`: its clients now. */
  currentClientConnections: number;
  /** `paused`, `disabled`: printed 1 or 0. */
  paused: boolean;
  disabled: boolean;
}

/** The figures of one line of SHOW STATS, PgBouncer's units: counts, bytes, microseconds. */
export interface AdminStatsFigures {
  /** `server_assignment_count`: times a client was given a server connection. */
  serverAssignmentCount: number;
  /** `xact_count`: transactions. */
  xactCount: number;
  /** `query_count`: queries. */
  queryCount: number;
  /** `received` (total) / `recv` (average): bytes from clients. */
  received: number;
  /** `sent`: bytes to clients. */
  sent: number;
  /** `xact_time`: µs on a server connection in a transaction. */
  xactTimeUs: number;
  /** `query_time`: µs running queries. */
  queryTimeUs: number;
  /** `wait_time`: µs clients waited for a server connection. */
  waitTimeUs: number;
}

/** One row of SHOW STATS: per (database, version). */
export interface AdminStatsRow {
  database: string;
  /** `version`: as AdminPoolRow.version. */
  version: string;
  /** The `total_` columns: since the proxy started. */
  total: AdminStatsFigures;
  /**
   * The `avg_` columns, over the last stats period: counts and bytes per second; xact_time per
   * transaction, query_time per query, wait_time per server assignment (PgBouncer's averages).
   */
  average: AdminStatsFigures;
}

/** One row of SHOW VERSIONS (tandem's own): a version the proxy routes to. */
export interface AdminVersionRow {
  database: string;
  /** `version`: the version schema; '' for clients on the server's default path. */
  version: string;
  /** `clients`: client sessions open on it now. */
  clients: number;
  /** `queries`: queries its clients have sent, since the proxy started. */
  queries: number;
  /** `last_query`: when its last query was sent; NULL if none was. */
  lastQuery: Date | undefined;
  /** `retired`: `complete` dropped it; its sessions are being closed. */
  retired: boolean;
}

/** One row of SHOW USERS: a user with pools. */
export interface AdminUserRow {
  name: string;
  /** `pool_size`, `reserve_pool_size`: the proxy's (tandem has no per-user override). */
  poolSize: number;
  reservePoolSize: number;
  poolMode: PoolMode;
  /** `max_user_connections` (0: no limit), `current_connections`: its server connections, open and opening. */
  maxUserConnections: number;
  currentConnections: number;
  /** `current_client_connections`: its clients now. */
  currentClientConnections: number;
}

/** SHOW LISTS: how many of each the proxy holds. */
export interface AdminListCounts {
  databases: number;
  users: number;
  pools: number;
  /** Clients logged in, and clients still logging in. */
  usedClients: number;
  loginClients: number;
  /** Server connections, open and opening. */
  usedServers: number;
}

/** One row of SHOW CONFIG. */
export interface AdminConfigRow {
  /** `key`: the setting, as its flag without the dashes (`max-client-conn`). */
  key: string;
  value: string;
  default: string;
  /** `changeable`: whether RELOAD applies a change (printed yes / no). */
  changeable: boolean;
}

/** What PAUSE and RESUME are refused against (PgBouncer's rules: a PAUSE of everything excludes the rest). */
export interface AdminPauseState {
  /** A PAUSE without a database is in force. */
  all: boolean;
  /** Databases paused by name (PAUSE db, KILL db). */
  databases: string[];
}

export interface AdminSource {
  pools(): AdminPoolRow[];
  clients(): AdminClientRow[];
  servers(): AdminServerRow[];
  stats(): AdminStatsRow[];
  versions(): AdminVersionRow[];
  config(): AdminConfigRow[];
  /** Known database names, for the "no such database" errors of PAUSE, RESUME, KILL and the others. */
  databases(): string[];
  databaseRows(): AdminDatabaseRow[];
  users(): AdminUserRow[];
  lists(): AdminListCounts;
  pauseState(): AdminPauseState;
  /**
   * Stops handing server connections to clients of `database` (all databases when undefined), and
   * resolves once every server connection of it has been given back and closed: PgBouncer's PAUSE,
   * which answers only then. New clients wait until RESUME.
   */
  pause(database: string | undefined): Promise<void>;
  /**
   * Lets the paused database serve clients again; when undefined, lifts the PAUSE of all and every
   * database's pause and KILL (PgBouncer's RESUME without a database leaves those in place).
   */
  resume(database: string | undefined): void;
  /** Re-reads what can change while running (the auth file, the version lists); rejects with the reason it could not. */
  reload(): Promise<void>;
  /**
   * Closes every client and server connection of `database` (of every database when undefined)
   * now, and leaves it paused until RESUME, as PgBouncer's KILL.
   */
  kill(database: string | undefined): void;
  /**
   * PgBouncer's RECONNECT: closes every server connection of `database` (of all databases when
   * undefined) once its client gives it back, idle ones now; new ones open as clients need them.
   */
  reconnect(database: string | undefined): void;
  /** PgBouncer's WAIT_CLOSE: resolves once no connection RECONNECT marked is left (of `database`, or of all). */
  waitClose(database: string | undefined): Promise<void>;
  /** PgBouncer's DISABLE: new clients of `database` are refused (connected ones go on) until ENABLE. */
  disable(database: string): void;
  enable(database: string): void;
  /**
   * Starts the same shutdown as SIGTERM. Called while the reply is being built: the caller writes
   * that reply (and its ReadyForQuery) before the admin connection is closed.
   */
  shutdown(): void;
}
