/**
 * The admin console through real clients: node-postgres (simple protocol) and psql, logged in to a
 * small front end that answers with answerAdminQuery over rows built here (the console's input, as
 * the proxy will build them from its pools).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import type {
  AdminClientRow,
  AdminConfigRow,
  AdminDatabaseRow,
  AdminListCounts,
  AdminPauseState,
  AdminPoolRow,
  AdminServerRow,
  AdminSource,
  AdminStatsRow,
  AdminUserRow,
  AdminVersionRow,
} from '../../../src/proxy/admin/source.js';
import { AdminUsers } from '../../../src/proxy/admin/users.js';
import { startConsoleServer, type ConsoleServer } from './console-server.js';

const CONNECTED = new Date('2026-03-04T05:06:07.890Z');
const LAST_QUERY = new Date('2026-03-04T05:16:00.000Z');

/** The console's input as plain arrays, and a record of the commands it was asked to run. */
class ArraySource implements AdminSource {
  poolRows: AdminPoolRow[] = [
    {
      database: 'app', user: 'web', version: 'public_02_rename', clientsActive: 3, clientsWaiting: 2, serversActive: 3,
      serversIdle: 1, serversUsed: 0, serversTested: 1, serversLogin: 1, maxWaitMs: 2_500.25, poolMode: 'transaction', paused: false,
    },
    {
      database: 'app', user: 'web', version: '', clientsActive: 1, clientsWaiting: 0, serversActive: 1,
      serversIdle: 0, serversUsed: 0, serversTested: 0, serversLogin: 0, maxWaitMs: 0, poolMode: 'session', paused: true,
    },
  ];
  clientRows: AdminClientRow[] = [
    {
      user: 'web', database: 'app', version: 'public_02_rename', state: 'waiting', addr: '10.0.0.7', port: 51234,
      localAddr: '127.0.0.1', localPort: 6432, connectTime: CONNECTED, requestTime: undefined, waitMs: 1_000.5, link: undefined,
      tls: '', applicationName: 'checkout', preparedStatements: 2, id: 17, pinned: '',
    },
    {
      user: 'web', database: 'app', version: 'public_02_rename', state: 'active', addr: '10.0.0.8', port: 51300,
      localAddr: '127.0.0.1', localPort: 6432, connectTime: CONNECTED, requestTime: LAST_QUERY, waitMs: 0, link: 5,
      tls: 'TLSv1.3/TLS_AES_256_GCM_SHA384', applicationName: '', preparedStatements: 0, id: 18, pinned: 'advisory_lock',
    },
  ];
  serverRows: AdminServerRow[] = [
    {
      user: 'web', database: 'app', version: 'public_02_rename', state: 'active', addr: '10.0.1.1', port: 5432,
      localAddr: '10.0.0.2', localPort: 40100, connectTime: CONNECTED, requestTime: LAST_QUERY, link: 18,
      tls: '', applicationName: '', preparedStatements: 4, id: 5, remotePid: 31337, closeNeeded: true,
    },
  ];
  databaseRowList: AdminDatabaseRow[] = [
    {
      name: 'app', host: '10.0.1.1', port: 5432, database: 'app', poolSize: 16, minPoolSize: 2, reservePoolSize: 4, serverLifetimeSeconds: 3600,
      poolMode: 'transaction', maxConnections: 40, currentConnections: 7, currentClientConnections: 120, paused: false, disabled: true,
    },
  ];
  statsRows: AdminStatsRow[] = [
    {
      database: 'app', version: 'public_02_rename',
      total: { serverAssignmentCount: 40, xactCount: 30, queryCount: 90, received: 12_345, sent: 67_890, xactTimeUs: 900_000, queryTimeUs: 600_000, waitTimeUs: 1_500 },
      average: { serverAssignmentCount: 2, xactCount: 1, queryCount: 3, received: 400, sent: 2_000, xactTimeUs: 30_000, queryTimeUs: 6_666.7, waitTimeUs: 37 },
    },
  ];
  versionRows: AdminVersionRow[] = [
    { database: 'app', version: 'public_01_init', clients: 0, queries: 120, lastQuery: LAST_QUERY, retired: true },
    { database: 'app', version: 'public_02_rename', clients: 4, queries: 7, lastQuery: undefined, retired: false },
  ];
  configRows: AdminConfigRow[] = [
    { key: 'max-client-conn', value: '200', default: '1000', changeable: false },
    { key: 'default-version', value: 'latest', default: 'latest', changeable: true },
  ];
  state: AdminPauseState = { all: false, databases: [] };
  /** Set by a test to hold WAIT_CLOSE until it says so. */
  waitCloseHook: (() => Promise<void>) | undefined;
  readonly calls: string[] = [];
  /** Set by a test to hold PAUSE until it says so. */
  pauseHook: (() => Promise<void>) | undefined;
  reloadFailure: Error | undefined;

  pools = () => this.poolRows;
  clients = () => this.clientRows;
  servers = () => this.serverRows;
  stats = () => this.statsRows;
  versions = () => this.versionRows;
  config = () => this.configRows;
  databases = () => ['app', 'My-App'];
  databaseRows = () => this.databaseRowList;
  userRows: AdminUserRow[] = [
    { name: 'web', poolSize: 16, reservePoolSize: 4, poolMode: 'transaction', maxUserConnections: 0, currentConnections: 5, currentClientConnections: 90 },
  ];
  users = () => this.userRows;
  lists = (): AdminListCounts => ({ databases: 2, users: 1, pools: 2, usedClients: 93, loginClients: 1, usedServers: 5 });
  pauseState = () => this.state;

  async pause(database: string | undefined): Promise<void> {
    this.calls.push(`pause ${database ?? '*'}`);
    await this.pauseHook?.();
    if (database === undefined) this.state = { ...this.state, all: true };
    else this.state = { ...this.state, databases: [...this.state.databases, database] };
  }
  resume(database: string | undefined): void {
    this.calls.push(`resume ${database ?? '*'}`);
    this.state = database === undefined ? { ...this.state, all: false, databases: [] } : { ...this.state, databases: this.state.databases.filter((d) => d !== database) };
  }
  reconnect(database: string | undefined): void {
    this.calls.push(`reconnect ${database ?? '*'}`);
  }
  async waitClose(database: string | undefined): Promise<void> {
    this.calls.push(`wait_close ${database ?? '*'}`);
    await this.waitCloseHook?.();
  }
  disable(database: string): void {
    this.calls.push(`disable ${database}`);
  }
  enable(database: string): void {
    this.calls.push(`enable ${database}`);
  }
  async reload(): Promise<void> {
    this.calls.push('reload');
    if (this.reloadFailure) throw this.reloadFailure;
  }
  kill(database: string | undefined): void {
    this.calls.push(`kill ${database ?? '*'}`);
  }
  shutdown(): void {
    this.calls.push('shutdown');
  }
}

let source: ArraySource;
let server: ConsoleServer;
const clients: pg.Client[] = [];

beforeEach(async () => {
  source = new ArraySource();
  server = await startConsoleServer(source, AdminUsers.parse('admin, ops', '--admin-users'));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.end().catch(() => {})));
  await server.close();
});

async function connect(user = 'admin'): Promise<pg.Client> {
  const client = new pg.Client({ host: '127.0.0.1', port: server.port, user, database: 'tandem' });
  clients.push(client);
  await client.connect();
  return client;
}

async function errorOf(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error('expected the query to fail');
}

const SOCKET_COLUMNS = ['addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait', 'wait_us'];
const SOCKET_TAIL = ['link', 'tls', 'application_name', 'prepared_statements', 'id'];

describe('SHOW through node-postgres', () => {
  it('SHOW POOLS: one row per pool, PgBouncer columns plus version, counts as int4', async () => {
    const client = await connect();
    const result = await client.query('SHOW POOLS');
    expect(result.command).toBe('SHOW');
    expect(result.fields.map((f) => f.name)).toEqual([
      'database', 'user', 'version', 'cl_active', 'cl_waiting', 'sv_active', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login',
      'maxwait', 'maxwait_us', 'pool_mode', 'paused',
    ]);
    expect(result.fields.find((f) => f.name === 'cl_active')!.dataTypeID).toBe(23);
    expect(result.fields.find((f) => f.name === 'database')!.dataTypeID).toBe(25);
    expect(result.rows).toEqual([
      {
        database: 'app', user: 'web', version: 'public_02_rename', cl_active: 3, cl_waiting: 2, sv_active: 3, sv_idle: 1, sv_used: 0,
        sv_tested: 1, sv_login: 1, maxwait: 2, maxwait_us: 500_250, pool_mode: 'transaction', paused: 0,
      },
      {
        database: 'app', user: 'web', version: '', cl_active: 1, cl_waiting: 0, sv_active: 1, sv_idle: 0, sv_used: 0,
        sv_tested: 0, sv_login: 0, maxwait: 0, maxwait_us: 0, pool_mode: 'session', paused: 1,
      },
    ]);
  });

  it('SHOW CLIENTS and SHOW SERVERS: PgBouncer socket columns, timestamps in UTC to the second, NULL where nothing is known', async () => {
    const client = await connect();
    const clientsResult = await client.query('SHOW CLIENTS');
    expect(clientsResult.fields.map((f) => f.name)).toEqual(['type', 'user', 'database', 'version', 'state', ...SOCKET_COLUMNS, ...SOCKET_TAIL, 'pinned']);
    expect(clientsResult.rows[0]).toMatchObject({
      type: 'C', state: 'waiting', addr: '10.0.0.7', port: 51234, connect_time: '2026-03-04 05:06:07 UTC', request_time: null,
      wait: 1, wait_us: 500, link: null, application_name: 'checkout', prepared_statements: 2, id: 17, pinned: '',
    });
    expect(clientsResult.rows[1]).toMatchObject({ state: 'active', request_time: '2026-03-04 05:16:00 UTC', link: 5, pinned: 'advisory_lock', tls: 'TLSv1.3/TLS_AES_256_GCM_SHA384' });

    const serversResult = await client.query('show servers');
    expect(serversResult.fields.map((f) => f.name)).toEqual(['type', 'user', 'database', 'version', 'state', ...SOCKET_COLUMNS, 'close_needed', 'remote_pid', ...SOCKET_TAIL]);
    expect(serversResult.rows).toEqual([
      {
        type: 'S', user: 'web', database: 'app', version: 'public_02_rename', state: 'active', addr: '10.0.1.1', port: 5432,
        local_addr: '10.0.0.2', local_port: 40100, connect_time: '2026-03-04 05:06:07 UTC', request_time: '2026-03-04 05:16:00 UTC',
        wait: 0, wait_us: 0, close_needed: 1, remote_pid: 31337, link: 18, tls: '', application_name: '', prepared_statements: 4, id: 5,
      },
    ]);
  });

  it('SHOW STATS: totals and averages per database and version, numeric as PgBouncer', async () => {
    const client = await connect();
    const result = await client.query('SHOW STATS;');
    const figures = ['server_assignment_count', 'xact_count', 'query_count'];
    expect(result.fields.map((f) => f.name)).toEqual([
      'database', 'version',
      ...figures.map((f) => `total_${f}`), 'total_received', 'total_sent', 'total_xact_time', 'total_query_time', 'total_wait_time',
      ...figures.map((f) => `avg_${f}`), 'avg_recv', 'avg_sent', 'avg_xact_time', 'avg_query_time', 'avg_wait_time',
    ]);
    expect(result.fields.find((f) => f.name === 'total_sent')!.dataTypeID).toBe(1700);
    expect(result.rows[0]).toMatchObject({ database: 'app', version: 'public_02_rename', total_query_count: '90', total_received: '12345', avg_query_time: '6666', avg_wait_time: '37' });
  });

  it('SHOW VERSIONS: clients, queries, last query and retirement of each version', async () => {
    const client = await connect();
    const result = await client.query('Show Versions');
    expect(result.fields.map((f) => [f.name, f.dataTypeID])).toEqual([
      ['database', 25], ['version', 25], ['clients', 23], ['queries', 20], ['last_query', 25], ['retired', 16],
    ]);
    expect(result.rows).toEqual([
      { database: 'app', version: 'public_01_init', clients: 0, queries: '120', last_query: '2026-03-04 05:16:00 UTC', retired: true },
      { database: 'app', version: 'public_02_rename', clients: 4, queries: '7', last_query: null, retired: false },
    ]);
  });

  it('SHOW DATABASES: PgBouncer columns with the pool settings, connection counts, paused and disabled', async () => {
    const client = await connect();
    const result = await client.query('SHOW DATABASES');
    expect(result.fields.map((f) => f.name)).toEqual([
      'name', 'host', 'port', 'database', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime', 'pool_mode',
      'max_connections', 'current_connections', 'current_client_connections', 'paused', 'disabled',
    ]);
    expect(result.rows).toEqual([
      {
        name: 'app', host: '10.0.1.1', port: 5432, database: 'app', pool_size: 16, min_pool_size: 2, reserve_pool_size: 4, server_lifetime: 3600,
        pool_mode: 'transaction', max_connections: 40, current_connections: 7, current_client_connections: 120, paused: 0, disabled: 1,
      },
    ]);
  });

  it('SHOW STATS_TOTALS, STATS_AVERAGES and TOTALS: the halves of SHOW STATS, and its sums, with PgBouncer\'s names', async () => {
    const client = await connect();
    source.statsRows.push({
      database: 'app', version: '',
      total: { serverAssignmentCount: 10, xactCount: 10, queryCount: 10, received: 5, sent: 10, xactTimeUs: 100_000, queryTimeUs: 40_000, waitTimeUs: 500 },
      average: { serverAssignmentCount: 1, xactCount: 1, queryCount: 1, received: 100, sent: 500, xactTimeUs: 10_000, queryTimeUs: 4_000, waitTimeUs: 50 },
    });
    const names = ['server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time'];
    const totals = await client.query('SHOW STATS_TOTALS');
    expect(totals.fields.map((f) => f.name)).toEqual(['database', 'version', ...names]);
    expect(totals.rows[0]).toEqual({
      database: 'app', version: 'public_02_rename', server_assignment_count: '40', xact_count: '30', query_count: '90', bytes_received: '12345',
      bytes_sent: '67890', xact_time: '900000', query_time: '600000', wait_time: '1500',
    });
    const averages = await client.query('show stats_averages');
    expect(averages.fields.map((f) => f.name)).toEqual(['database', 'version', ...names]);
    expect(averages.rows[0]).toMatchObject({ query_count: '3', bytes_received: '400', query_time: '6666', wait_time: '37' });

    const sums = Object.fromEntries((await client.query('SHOW TOTALS')).rows.map((row) => [row.name, row.value]));
    expect(sums).toMatchObject({
      total_xact_count: '40', total_query_count: '100', total_client_bytes: '12350', total_server_bytes: '67900', total_wait_time: '2000',
      // Rates add up; times are per transaction, query and assignment over both rows.
      avg_xact_count: '2', avg_client_bytes: '500', avg_xact_time: '25000', avg_query_time: '6400', avg_wait_time: '40',
    });
  });

  it('SHOW USERS and SHOW LISTS', async () => {
    const client = await connect();
    const users = await client.query('SHOW USERS');
    expect(users.fields.map((f) => f.name)).toEqual([
      'name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections', 'current_client_connections',
    ]);
    expect(users.rows).toEqual([
      { name: 'web', pool_size: 16, reserve_pool_size: 4, pool_mode: 'transaction', max_user_connections: 0, current_connections: 5, current_client_connections: 90 },
    ]);
    const lists = Object.fromEntries((await client.query('SHOW LISTS')).rows.map((row) => [row.list, row.items]));
    expect(lists).toEqual({
      databases: 2, users: 1, peers: 0, pools: 2, peer_pools: 0, free_clients: 0, used_clients: 93, login_clients: 1, free_servers: 0,
      used_servers: 5, dns_names: 0, dns_zones: 0, dns_queries: 0, dns_pending: 0,
    });
  });

  it('SHOW STATE: active, paused, suspended as PgBouncer prints them', async () => {
    const client = await connect();
    expect((await client.query('SHOW STATE')).rows).toEqual([
      { key: 'active', value: 'yes' },
      { key: 'paused', value: 'no' },
      { key: 'suspended', value: 'no' },
    ]);
    await client.query('PAUSE');
    expect((await client.query('SHOW STATE')).rows.slice(0, 2)).toEqual([
      { key: 'active', value: 'no' },
      { key: 'paused', value: 'yes' },
    ]);
  });

  it('SHOW CONFIG: key, value, default, changeable', async () => {
    const client = await connect();
    const result = await client.query('SHOW CONFIG');
    expect(result.rows).toEqual([
      { key: 'max-client-conn', value: '200', default: '1000', changeable: 'no' },
      { key: 'default-version', value: 'latest', default: 'latest', changeable: 'yes' },
    ]);
  });

  it('SHOW HELP: a notice listing the commands', async () => {
    const client = await connect();
    const notices: Array<{ message?: string; detail?: string; severity?: string }> = [];
    client.on('notice', (notice) => notices.push(notice));
    const result = await client.query('SHOW HELP');
    expect(result.command).toBe('SHOW');
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({ severity: 'NOTICE', message: 'Console usage' });
    for (const command of [
      'SHOW HELP|POOLS|CLIENTS|SERVERS|STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|VERSIONS|DATABASES|USERS|LISTS|STATE|CONFIG', 'PAUSE [<db>]', 'RESUME [<db>]', 'DISABLE <db>', 'ENABLE <db>',
      'RECONNECT [<db>]', 'KILL [<db>]', 'WAIT_CLOSE [<db>]', 'RELOAD', 'SHUTDOWN',
    ]) {
      expect(notices[0]!.detail).toContain(command);
    }
  });

  it('answers several statements of one query in order; an empty query gets EmptyQueryResponse', async () => {
    const client = await connect();
    const results = (await client.query('SHOW VERSIONS; show pools ;;')) as unknown as pg.QueryResult[];
    expect(results).toHaveLength(2);
    expect(results[0]!.fields[2]!.name).toBe('clients');
    expect(results[1]!.fields[3]!.name).toBe('cl_active');
    for (const empty of ['', ' ;; ']) {
      const result = await client.query(empty);
      expect(result.command).toBeNull();
      expect(result.rows).toEqual([]);
    }
  });
});

describe('commands through node-postgres', () => {
  it('PAUSE answers once the source has paused; RESUME, KILL, RELOAD and SHUTDOWN reach the source with their tags', async () => {
    const client = await connect();
    let open!: () => void;
    let reached!: () => void;
    const pauseReached = new Promise<void>((resolve) => (reached = resolve));
    source.pauseHook = () => {
      source.pauseHook = undefined;
      reached();
      return new Promise((resolve) => (open = resolve));
    };
    let answered = false;
    const paused = client.query('PAUSE app').then((result) => {
      answered = true;
      return result;
    });
    await pauseReached;
    expect(answered).toBe(false);
    open();
    expect((await paused).command).toBe('PAUSE');

    expect((await client.query('RESUME app')).command).toBe('RESUME');
    expect((await client.query('kill app')).command).toBe('KILL');
    expect((await client.query('PAUSE')).command).toBe('PAUSE');
    expect((await client.query('RESUME')).command).toBe('RESUME');
    expect((await client.query('RELOAD')).command).toBe('RELOAD');
    expect((await client.query('SHUTDOWN;')).command).toBe('SHUTDOWN');
    expect(source.calls).toEqual(['pause app', 'resume app', 'kill app', 'pause *', 'resume *', 'reload', 'shutdown']);
  });

  it('DISABLE, ENABLE and RECONNECT reach the source with their tags; WAIT_CLOSE answers once the source is done', async () => {
    const client = await connect();
    expect((await client.query('DISABLE app')).command).toBe('DISABLE');
    expect((await client.query('enable "My-App"')).command).toBe('ENABLE');
    expect((await client.query('RECONNECT app')).command).toBe('RECONNECT');
    expect((await client.query('RECONNECT')).command).toBe('RECONNECT');
    let open!: () => void;
    let reached!: () => void;
    const waitReached = new Promise<void>((resolve) => (reached = resolve));
    source.waitCloseHook = () => {
      reached();
      return new Promise((resolve) => (open = resolve));
    };
    let answered = false;
    const waited = client.query('WAIT_CLOSE app').then((result) => {
      answered = true;
      return result;
    });
    await waitReached;
    expect(answered).toBe(false);
    open();
    // node-postgres reads a tag's letters only: WAIT_CLOSE is 'WAIT' to it (psql's test below sees the whole tag).
    expect((await waited).command).toBe('WAIT');
    source.waitCloseHook = undefined;
    expect((await client.query('WAIT_CLOSE')).command).toBe('WAIT');
    expect(source.calls).toEqual(['disable app', 'enable My-App', 'reconnect app', 'reconnect *', 'wait_close app', 'wait_close *']);
  });

  it('a double-quoted database keeps its case and its characters', async () => {
    const client = await connect();
    await client.query('PAUSE "My-App"; RESUME "My-App"');
    expect(source.calls).toEqual(['pause My-App', 'resume My-App']);
    expect(await errorOf(client.query('PAUSE "my-app"'))).toMatchObject({ code: '08P01', message: 'no such database: my-app' });
  });

  it('refuses as PgBouncer does, with 08P01, and runs nothing after the first error of a query', async () => {
    const client = await connect();
    const refusals: Array<[string, string]> = [
      ['SHOW NOTHING', "invalid command 'SHOW NOTHING', use SHOW HELP;"],
      ['SHOW', "invalid command 'SHOW', use SHOW HELP;"],
      ['SHOW constructor', "invalid command 'SHOW constructor', use SHOW HELP;"],
      ['SELECT 1', "invalid command 'SELECT 1', use SHOW HELP;"],
      ['SHOW POOLS extra', "invalid command 'SHOW POOLS extra', use SHOW HELP;"],
      ['RELOAD now', "invalid command 'RELOAD now', use SHOW HELP;"],
      ['PAUSE nope', 'no such database: nope'],
      ['KILL nope', 'no such database: nope'],
      ['RESUME', 'pooler is not paused/suspended'],
      ['RESUME app', 'database app is not paused'],
      ['DISABLE', 'a database is required'],
      ['ENABLE', 'a database is required'],
      ['DISABLE nope', 'no such database: nope'],
      ['RECONNECT nope', 'no such database: nope'],
      ['WAIT_CLOSE nope', 'no such database: nope'],
    ];
    for (const [sql, message] of refusals) {
      expect(await errorOf(client.query(sql)), sql).toMatchObject({ code: '08P01', message });
    }
    expect(source.calls).toEqual([]);

    expect(await errorOf(client.query('PAUSE app; SHOW NOPE; KILL app'))).toMatchObject({ code: '08P01' });
    expect(source.calls).toEqual(['pause app']);

    await client.query('PAUSE');
    expect(await errorOf(client.query('PAUSE app'))).toMatchObject({ code: '08P01', message: 'already suspended/paused' });
    expect(await errorOf(client.query('KILL app'))).toMatchObject({ code: '08P01', message: 'already suspended/paused' });
    // The session goes on after an error.
    expect((await client.query('RESUME')).command).toBe('RESUME');
  });

  it('a command the source fails is an error of that statement: F0000 for RELOAD, XX000 for the others', async () => {
    const client = await connect();
    source.reloadFailure = new Error('cannot read /etc/tandem/userlist.txt');
    expect(await errorOf(client.query('RELOAD'))).toMatchObject({ code: 'F0000', message: 'RELOAD failed: cannot read /etc/tandem/userlist.txt' });
    source.pauseHook = () => Promise.reject(new Error('the proxy is shutting down'));
    expect(await errorOf(client.query('PAUSE app'))).toMatchObject({ code: 'XX000', message: 'PAUSE failed: the proxy is shutting down' });
    expect((await client.query('SHOW POOLS')).command).toBe('SHOW');
  });

  it('refuses the extended protocol', async () => {
    const client = await connect();
    client.on('error', () => {});
    expect(await errorOf(client.query({ name: 'pools', text: 'SHOW POOLS' }))).toMatchObject({
      code: '08P01',
      message: 'extended query protocol not supported by admin console',
    });
  });

  it('only --admin-users log in', async () => {
    expect(await errorOf(connect('web'))).toMatchObject({ code: '28000', message: 'user "web" is not allowed to use the admin console (database "tandem")' });
    const ops = await connect('ops');
    expect((await ops.query('SHOW POOLS')).rows).toHaveLength(2);
  });
});

describe('through psql', () => {
  const run = promisify(execFile);
  const psql = (sql: string, user = 'admin') =>
    run('psql', ['-X', '-A', '-F', '|', '-h', '127.0.0.1', '-p', String(server.port), '-U', user, '-d', 'tandem', '-c', sql], {
      env: { ...process.env, PGPASSWORD: '', PGOPTIONS: '' },
    });

  it('shows pools, several results of one query, and the help notice', async () => {
    const pools = await psql('SHOW POOLS');
    const lines = pools.stdout.trim().split('\n');
    expect(lines[0]).toBe('database|user|version|cl_active|cl_waiting|sv_active|sv_idle|sv_used|sv_tested|sv_login|maxwait|maxwait_us|pool_mode|paused');
    expect(lines.slice(1)).toEqual(['app|web|public_02_rename|3|2|3|1|0|1|1|2|500250|transaction|0', 'app|web||1|0|1|0|0|0|0|0|0|session|1', '(2 rows)']);

    const both = await psql('SHOW VERSIONS; PAUSE app');
    expect(both.stdout).toContain('app|public_01_init|0|120|2026-03-04 05:16:00 UTC|t');
    expect(both.stdout).toContain('PAUSE');
    expect(source.calls).toEqual(['pause app']);

    const help = await psql('SHOW HELP');
    expect(help.stderr).toContain('NOTICE:  Console usage');
    expect(help.stderr).toContain('KILL [<db>]');

    const tags = await psql('DISABLE app; ENABLE app; RECONNECT; WAIT_CLOSE app');
    expect(tags.stdout.trim().split('\n')).toEqual(['DISABLE', 'ENABLE', 'RECONNECT', 'WAIT_CLOSE']);
  });

  it('reports errors and refused logins', async () => {
    const failed = await errorOf(psql('SHOW NOTHING'));
    expect(failed.message).toContain("ERROR:  invalid command 'SHOW NOTHING', use SHOW HELP;");
    const refused = await errorOf(psql('SHOW POOLS', 'web'));
    expect(refused.message).toContain('FATAL:  user "web" is not allowed to use the admin console');
  });
});

describe('AdminUsers', () => {
  it('reads --admin-users as PgBouncer reads admin_users: names separated by commas', () => {
    const users = AdminUsers.parse(' alice ,bob,,', '--admin-users');
    expect([users.isAdmin('alice'), users.isAdmin('bob'), users.isAdmin('Alice'), users.isAdmin('')]).toEqual([true, true, false, false]);
    expect(users.open).toBe(true);
    expect(AdminUsers.parse('', '--admin-users').open).toBe(false);
    expect(AdminUsers.none.isAdmin('postgres')).toBe(false);
    expect(() => AdminUsers.parse('alice bob', '--admin-users')).toThrow('--admin-users takes user names separated by commas, got "alice bob"');
  });
});
