/**
 * The admin console's answers, as PgBouncer's console gives them: a client of the admin database
 * sends simple-protocol queries such as `SHOW POOLS` or `PAUSE app`, and gets rows or a command tag.
 * Pure over its AdminSource: one query in, the reply's bytes out; the session that owns the socket
 * adds ReadyForQuery.
 *
 * Errors carry PgBouncer's SQLSTATE (08P01 for every refusal; F0000 for a failed RELOAD) and
 * wording, so scripts written against PgBouncer read them the same way.
 */
import {
  EMPTY_QUERY_RESPONSE,
  TypeOid,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeNoticeResponse,
  encodeRowDescription,
  type ErrorFields,
} from '../protocol/messages.js';
import type {
  AdminClientRow,
  AdminConfigRow,
  AdminConnectionRow,
  AdminDatabaseRow,
  AdminListCounts,
  AdminPoolRow,
  AdminServerRow,
  AdminSource,
  AdminStatsFigures,
  AdminStatsRow,
  AdminUserRow,
  AdminVersionRow,
} from './source.js';

type Cell = string | number | boolean | Date | undefined;

type ColumnType = 'text' | 'int4' | 'int8' | 'numeric' | 'bool' | 'time';

interface Column<Row> {
  name: string;
  type: ColumnType;
  value: (row: Row) => Cell;
}

function column<Row>(name: string, type: ColumnType, value: (row: Row) => Cell): Column<Row> {
  return { name, type, value };
}

const TYPE_OIDS: Record<ColumnType, number> = {
  text: TypeOid.text,
  int4: TypeOid.int4,
  int8: TypeOid.int8,
  numeric: TypeOid.numeric,
  bool: TypeOid.bool,
  time: TypeOid.text,
};

/** A cell as PgBouncer prints it: whole numbers, t/f, timestamps to the second with their zone (UTC here), NULL for unknown. */
function formatCell(cell: Cell): string | null {
  if (cell === undefined) return null;
  if (typeof cell === 'boolean') return cell ? 't' : 'f';
  if (typeof cell === 'number') return String(Math.trunc(cell));
  if (cell instanceof Date) return `${cell.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  return cell;
}

/** A duration in ms as PgBouncer's pair of columns: whole seconds, then the microseconds past them. */
function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}
function microsecondsPast(ms: number): number {
  return Math.floor((ms * 1000) % 1_000_000);
}

const POOL_COLUMNS: Array<Column<AdminPoolRow>> = [
  column('database', 'text', (r) => r.database),
  column('user', 'text', (r) => r.user),
  column('version', 'text', (r) => r.version),
  column('cl_active', 'int4', (r) => r.clientsActive),
  column('cl_waiting', 'int4', (r) => r.clientsWaiting),
  column('sv_active', 'int4', (r) => r.serversActive),
  column('sv_idle', 'int4', (r) => r.serversIdle),
  column('sv_used', 'int4', (r) => r.serversUsed),
  column('sv_tested', 'int4', (r) => r.serversTested),
  column('sv_login', 'int4', (r) => r.serversLogin),
  column('maxwait', 'int4', (r) => seconds(r.maxWaitMs)),
  column('maxwait_us', 'int4', (r) => microsecondsPast(r.maxWaitMs)),
  column('pool_mode', 'text', (r) => r.poolMode),
  column('paused', 'int4', (r) => (r.paused ? 1 : 0)),
];

/** The columns SHOW CLIENTS and SHOW SERVERS share, after `type` and before `state`. */
const CONNECTION_HEAD: Array<Column<AdminConnectionRow>> = [
  column('user', 'text', (r) => r.user),
  column('database', 'text', (r) => r.database),
  column('version', 'text', (r) => r.version),
];

/** The columns they share after `state`, up to `wait`. */
const CONNECTION_BODY: Array<Column<AdminConnectionRow>> = [
  column('addr', 'text', (r) => r.addr),
  column('port', 'int4', (r) => r.port),
  column('local_addr', 'text', (r) => r.localAddr),
  column('local_port', 'int4', (r) => r.localPort),
  column('connect_time', 'time', (r) => r.connectTime),
  column('request_time', 'time', (r) => r.requestTime),
];

/** The columns they share at the end. */
const CONNECTION_TAIL: Array<Column<AdminConnectionRow>> = [
  column('link', 'int4', (r) => r.link),
  column('tls', 'text', (r) => r.tls),
  column('application_name', 'text', (r) => r.applicationName),
  column('prepared_statements', 'int4', (r) => r.preparedStatements),
  column('id', 'int4', (r) => r.id),
];

const CLIENT_COLUMNS: Array<Column<AdminClientRow>> = [
  column('type', 'text', () => 'C'),
  ...CONNECTION_HEAD,
  column('state', 'text', (r) => r.state),
  ...CONNECTION_BODY,
  column('wait', 'int4', (r) => seconds(r.waitMs)),
  column('wait_us', 'int4', (r) => microsecondsPast(r.waitMs)),
  ...CONNECTION_TAIL,
  column('pinned', 'text', (r) => r.pinned),
];

const SERVER_COLUMNS: Array<Column<AdminServerRow>> = [
  column('type', 'text', () => 'S'),
  ...CONNECTION_HEAD,
  column('state', 'text', (r) => r.state),
  ...CONNECTION_BODY,
  // PgBouncer keeps the client-only wait columns in its server list, always 0, so both lists line up.
  column('wait', 'int4', () => 0),
  column('wait_us', 'int4', () => 0),
  column('close_needed', 'int4', (r) => (r.closeNeeded ? 1 : 0)),
  column('remote_pid', 'int4', (r) => r.remotePid),
  ...CONNECTION_TAIL,
];

/** PgBouncer's stats figures in its column order, by their name after `total_` / `avg_`. */
const STATS_FIGURES: Array<[total: string, average: string, figure: keyof AdminStatsFigures]> = [
  ['server_assignment_count', 'server_assignment_count', 'serverAssignmentCount'],
  ['xact_count', 'xact_count', 'xactCount'],
  ['query_count', 'query_count', 'queryCount'],
  ['received', 'recv', 'received'],
  ['sent', 'sent', 'sent'],
  ['xact_time', 'xact_time', 'xactTimeUs'],
  ['query_time', 'query_time', 'queryTimeUs'],
  ['wait_time', 'wait_time', 'waitTimeUs'],
];

const STATS_COLUMNS: Array<Column<AdminStatsRow>> = [
  column('database', 'text', (r) => r.database),
  column('version', 'text', (r) => r.version),
  ...STATS_FIGURES.map(([name, , figure]) => column<AdminStatsRow>(`total_${name}`, 'numeric', (r) => r.total[figure])),
  ...STATS_FIGURES.map(([, name, figure]) => column<AdminStatsRow>(`avg_${name}`, 'numeric', (r) => r.average[figure])),
];

/** PgBouncer's SHOW STATS_TOTALS and STATS_AVERAGES: the two halves of SHOW STATS, bytes named as there. */
const STATS_PART_NAMES: Array<[name: string, figure: keyof AdminStatsFigures]> = [
  ['server_assignment_count', 'serverAssignmentCount'],
  ['xact_count', 'xactCount'],
  ['query_count', 'queryCount'],
  ['bytes_received', 'received'],
  ['bytes_sent', 'sent'],
  ['xact_time', 'xactTimeUs'],
  ['query_time', 'queryTimeUs'],
  ['wait_time', 'waitTimeUs'],
];

function statsPartColumns(part: 'total' | 'average'): Array<Column<AdminStatsRow>> {
  return [
    column('database', 'text', (r) => r.database),
    column('version', 'text', (r) => r.version),
    ...STATS_PART_NAMES.map(([name, figure]) => column<AdminStatsRow>(name, 'numeric', (r) => r[part][figure])),
  ];
}

/** PgBouncer's SHOW TOTALS: SHOW STATS summed over every database, as name and value rows. */
function encodeTotals(source: AdminSource): Buffer {
  const rows = source.stats();
  const sum = (part: 'total' | 'average', figure: keyof AdminStatsFigures) => rows.reduce((total, row) => total + row[part][figure], 0);
  const per = (time: keyof AdminStatsFigures, count: keyof AdminStatsFigures) => {
    const n = sum('total', count);
    return n > 0 ? sum('total', time) / n : 0;
  };
  // PgBouncer's names: client_bytes from the clients, server_bytes from the servers (to the clients).
  const names: Array<[string, keyof AdminStatsFigures]> = [
    ['server_assignment_count', 'serverAssignmentCount'],
    ['xact_count', 'xactCount'],
    ['query_count', 'queryCount'],
    ['client_bytes', 'received'],
    ['server_bytes', 'sent'],
    ['xact_time', 'xactTimeUs'],
    ['query_time', 'queryTimeUs'],
    ['wait_time', 'waitTimeUs'],
  ];
  const averages: Record<string, number> = {
    xactTimeUs: per('xactTimeUs', 'xactCount'),
    queryTimeUs: per('queryTimeUs', 'queryCount'),
    waitTimeUs: per('waitTimeUs', 'serverAssignmentCount'),
  };
  return encodePairs(['name', 'value', 'numeric'], [
    ...names.map(([name, figure]): [string, Cell] => [`total_${name}`, sum('total', figure)]),
    ...names.map(([name, figure]): [string, Cell] => [`avg_${name}`, averages[figure] ?? sum('average', figure)]),
  ]);
}

const USER_COLUMNS: Array<Column<AdminUserRow>> = [
  column('name', 'text', (r) => r.name),
  column('pool_size', 'int4', (r) => r.poolSize),
  column('reserve_pool_size', 'int4', (r) => r.reservePoolSize),
  column('pool_mode', 'text', (r) => r.poolMode),
  column('max_user_connections', 'int4', (r) => r.maxUserConnections),
  column('current_connections', 'int4', (r) => r.currentConnections),
  column('current_client_connections', 'int4', (r) => r.currentClientConnections),
];

/** PgBouncer's SHOW LISTS. tandem keeps no free lists, peers or DNS cache: those are 0. */
function encodeLists(source: AdminSource): Buffer {
  const counts: AdminListCounts = source.lists();
  return encodePairs(['list', 'items', 'int4'], [
    ['databases', counts.databases],
    ['users', counts.users],
    ['peers', 0],
    ['pools', counts.pools],
    ['peer_pools', 0],
    ['free_clients', 0],
    ['used_clients', counts.usedClients],
    ['login_clients', counts.loginClients],
    ['free_servers', 0],
    ['used_servers', counts.usedServers],
    ['dns_names', 0],
    ['dns_zones', 0],
    ['dns_queries', 0],
    ['dns_pending', 0],
  ]);
}

const VERSION_COLUMNS: Array<Column<AdminVersionRow>> = [
  column('database', 'text', (r) => r.database),
  column('version', 'text', (r) => r.version),
  column('clients', 'int4', (r) => r.clients),
  column('queries', 'int8', (r) => r.queries),
  column('last_query', 'time', (r) => r.lastQuery),
  column('retired', 'bool', (r) => r.retired),
];

/** PgBouncer's SHOW DATABASES columns, less those tandem has no setting for (force_user, load balancing, per-database client limits). */
const DATABASE_COLUMNS: Array<Column<AdminDatabaseRow>> = [
  column('name', 'text', (r) => r.name),
  column('host', 'text', (r) => r.host),
  column('port', 'int4', (r) => r.port),
  column('database', 'text', (r) => r.database),
  column('pool_size', 'int4', (r) => r.poolSize),
  column('min_pool_size', 'int4', (r) => r.minPoolSize),
  column('reserve_pool_size', 'int4', (r) => r.reservePoolSize),
  column('server_lifetime', 'int4', (r) => r.serverLifetimeSeconds),
  column('pool_mode', 'text', (r) => r.poolMode),
  column('max_connections', 'int4', (r) => r.maxConnections),
  column('current_connections', 'int4', (r) => r.currentConnections),
  column('current_client_connections', 'int4', (r) => r.currentClientConnections),
  column('paused', 'int4', (r) => (r.paused ? 1 : 0)),
  column('disabled', 'int4', (r) => (r.disabled ? 1 : 0)),
];

/** PgBouncer's SHOW STATE: whether the pooler as a whole is paused (tandem has no SUSPEND). */
function encodeState(source: AdminSource): Buffer {
  const state = source.pauseState();
  return encodePairs(['key', 'value', 'text'], [
    ['active', state.all ? 'no' : 'yes'],
    ['paused', state.all ? 'yes' : 'no'],
    ['suspended', 'no'],
  ]);
}

/** A listing of name and value rows (SHOW STATE, TOTALS, LISTS): its two column names and the values' type. */
function encodePairs(columns: [name: string, value: string, type: ColumnType], pairs: Array<[string, Cell]>): Buffer {
  const [name, value, type] = columns;
  return encodeRows([column<[string, Cell]>(name, 'text', (r) => r[0]), column<[string, Cell]>(value, type, (r) => r[1])], pairs);
}

const CONFIG_COLUMNS: Array<Column<AdminConfigRow>> = [
  column('key', 'text', (r) => r.key),
  column('value', 'text', (r) => r.value),
  column('default', 'text', (r) => r.default),
  column('changeable', 'text', (r) => (r.changeable ? 'yes' : 'no')),
];

function encodeRows<Row>(columns: ReadonlyArray<Column<Row>>, rows: readonly Row[]): Buffer {
  return Buffer.concat([
    encodeRowDescription(columns.map((c) => ({ name: c.name, typeOid: TYPE_OIDS[c.type] }))),
    ...rows.map((row) => encodeDataRow(columns.map((c) => formatCell(c.value(row))))),
    // PgBouncer tags every SHOW with a bare `SHOW`, whatever the row count.
    encodeCommandComplete('SHOW'),
  ]);
}

const HELP = [
  '',
  'SHOW HELP|POOLS|CLIENTS|SERVERS|STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|VERSIONS|DATABASES|USERS|LISTS|STATE|CONFIG',
  'PAUSE [<db>]',
  'RESUME [<db>]',
  'DISABLE <db>',
  'ENABLE <db>',
  'RECONNECT [<db>]',
  'KILL [<db>]',
  'WAIT_CLOSE [<db>]',
  'RELOAD',
  'SHUTDOWN',
].join('\n\t');

// A Map, not an object literal: `SHOW constructor` must not find Object's prototype.
const SHOW = new Map<string, (source: AdminSource) => Buffer>([
  ['pools', (source) => encodeRows(POOL_COLUMNS, source.pools())],
  ['clients', (source) => encodeRows(CLIENT_COLUMNS, source.clients())],
  ['servers', (source) => encodeRows(SERVER_COLUMNS, source.servers())],
  ['stats', (source) => encodeRows(STATS_COLUMNS, source.stats())],
  ['versions', (source) => encodeRows(VERSION_COLUMNS, source.versions())],
  ['stats_totals', (source) => encodeRows(statsPartColumns('total'), source.stats())],
  ['stats_averages', (source) => encodeRows(statsPartColumns('average'), source.stats())],
  ['totals', encodeTotals],
  ['databases', (source) => encodeRows(DATABASE_COLUMNS, source.databaseRows())],
  ['users', (source) => encodeRows(USER_COLUMNS, source.users())],
  ['lists', encodeLists],
  ['state', encodeState],
  ['config', (source) => encodeRows(CONFIG_COLUMNS, source.config())],
  [
    'help',
    () =>
      Buffer.concat([
        encodeNoticeResponse({ severity: 'NOTICE', code: '00000', message: 'Console usage', detail: HELP }),
        encodeCommandComplete('SHOW'),
      ]),
  ],
]);

/** A refusal of one statement; stops the rest of the query, as PostgreSQL stops at an error. */
class ConsoleError extends Error {
  constructor(
    message: string,
    readonly code = '08P01',
  ) {
    super(message);
  }
}

/**
 * What a client that sends anything but a simple Query (Parse, Bind, a FunctionCall…) is told
 * before the session closes: PgBouncer's console speaks only the simple protocol too.
 */
export const EXTENDED_PROTOCOL_REFUSAL: ErrorFields = {
  severity: 'FATAL',
  code: '08P01',
  message: 'extended query protocol not supported by admin console',
  hint: 'Send the command as a simple query (psql does; node-postgres does for a query without parameters).',
};

function invalidCommand(statement: string): ConsoleError {
  return new ConsoleError(`invalid command '${statement}', use SHOW HELP;`);
}

/**
 * The reply to one Query message: each statement's result in order, up to the first error, or
 * EmptyQueryResponse when it holds no statement. Without the ReadyForQuery that ends it. A failing
 * command is an ErrorResponse in the reply; it rejects only if a listing (`pools()`…) throws.
 */
export async function answerAdminQuery(sql: string, source: AdminSource): Promise<Buffer> {
  const statements = splitStatements(sql);
  if (statements.length === 0) return EMPTY_QUERY_RESPONSE;
  const replies: Buffer[] = [];
  for (const statement of statements) {
    try {
      replies.push(await answerStatement(statement, source));
    } catch (error) {
      if (!(error instanceof ConsoleError)) throw error;
      replies.push(encodeErrorResponse({ severity: 'ERROR', code: error.code, message: error.message }));
      break;
    }
  }
  return Buffer.concat(replies);
}

async function answerStatement(statement: string, source: AdminSource): Promise<Buffer> {
  const words = parseWords(statement);
  if (!words) throw invalidCommand(statement);
  const [command, argument] = words;
  switch (command.toLowerCase()) {
    case 'show': {
      const show = argument === undefined ? undefined : SHOW.get(argument.toLowerCase());
      if (!show) throw invalidCommand(statement);
      return show(source);
    }
    case 'pause':
      return pause(argument, source);
    case 'resume':
      return resume(argument, source);
    case 'kill':
      if (source.pauseState().all) throw new ConsoleError('already suspended/paused');
      if (argument !== undefined) knownDatabase(argument, source);
      await act('KILL', () => source.kill(argument));
      return encodeCommandComplete('KILL');
    case 'disable':
    case 'enable': {
      if (argument === undefined) throw new ConsoleError('a database is required');
      knownDatabase(argument, source);
      if (command.toLowerCase() === 'disable') source.disable(argument);
      else source.enable(argument);
      return encodeCommandComplete(command.toUpperCase());
    }
    case 'reconnect':
      if (argument !== undefined) knownDatabase(argument, source);
      await act('RECONNECT', () => source.reconnect(argument));
      return encodeCommandComplete('RECONNECT');
    case 'wait_close':
      if (argument !== undefined) knownDatabase(argument, source);
      await act('WAIT_CLOSE', () => source.waitClose(argument));
      return encodeCommandComplete('WAIT_CLOSE');
    case 'reload':
      if (argument !== undefined) throw invalidCommand(statement);
      // PgBouncer's SQLSTATE for a reload that failed: config_file_error.
      await act('RELOAD', () => source.reload(), 'F0000');
      return encodeCommandComplete('RELOAD');
    case 'shutdown':
      if (argument !== undefined) throw invalidCommand(statement);
      await act('SHUTDOWN', () => source.shutdown());
      return encodeCommandComplete('SHUTDOWN');
    default:
      throw invalidCommand(statement);
  }
}

async function pause(database: string | undefined, source: AdminSource): Promise<Buffer> {
  if (source.pauseState().all) throw new ConsoleError('already suspended/paused');
  if (database !== undefined) knownDatabase(database, source);
  await act('PAUSE', () => source.pause(database));
  return encodeCommandComplete('PAUSE');
}

async function resume(database: string | undefined, source: AdminSource): Promise<Buffer> {
  const state = source.pauseState();
  if (database === undefined) {
    if (!state.all && state.databases.length === 0) throw new ConsoleError('pooler is not paused/suspended');
  } else {
    knownDatabase(database, source);
    if (!state.databases.includes(database)) throw new ConsoleError(`database ${database} is not paused`);
  }
  await act('RESUME', () => source.resume(database));
  return encodeCommandComplete('RESUME');
}

function knownDatabase(database: string, source: AdminSource): void {
  if (!source.databases().includes(database)) throw new ConsoleError(`no such database: ${database}`);
}

/** Runs a command on the source; its failure is the statement's error, not the session's. */
async function act(command: string, run: () => unknown, code = 'XX000'): Promise<void> {
  try {
    await run();
  } catch (error) {
    throw new ConsoleError(`${command} failed: ${error instanceof Error ? error.message : String(error)}`, code);
  }
}

/**
 * The statements of a query, split at semicolons outside quotes, trimmed, empty ones dropped
 * (`SHOW POOLS;;` is one statement, `;` none).
 */
function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let start = 0;
  let quote: string | undefined;
  for (let i = 0; i < sql.length; i++) {
    const char = sql[i]!;
    if (quote !== undefined) {
      if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") {
      quote = char;
    } else if (char === ';') {
      statements.push(sql.slice(start, i));
      start = i + 1;
    }
  }
  statements.push(sql.slice(start));
  return statements.map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * A command word and at most one argument, as PgBouncer's console reads them; a double-quoted
 * argument keeps its case and may hold any character (`""` is a quote). Undefined for anything else.
 */
function parseWords(statement: string): [string, string | undefined] | undefined {
  const match = /^([a-z_]+)(?:\s+(?:"((?:[^"]|"")*)"|([^\s"]+)))?$/i.exec(statement);
  if (!match) return undefined;
  const argument = match[2] !== undefined ? match[2].replaceAll('""', '"') : match[3];
  return [match[1]!, argument];
}
