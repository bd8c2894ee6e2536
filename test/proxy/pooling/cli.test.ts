/**
 * The pooling flags as a user gives them to `tandem proxy`: refusals of what cannot work (exit 2,
 * before anything listens), and a real pooled proxy process with its metrics and status.
 */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { freePort } from '../../../src/dev/ports.js';
import { runCli } from '../../support/cli.js';
import { usePostgres } from '../../support/harness.js';
import { spawnCli, waitFor } from '../../support/spawn.js';
import { databaseOf } from '../support.js';

const db = usePostgres();

describe('tandem proxy pooling flags', () => {
  it.each([
    [['--pool-mode', 'statement'], '--pool-mode must be none, session or transaction, got "statement"'],
    [['--pool-mode', 'transaction'], '--auth-type md5 needs the users\' secrets: give --auth-file, --auth-query, or both'],
    [['--pool-mode', 'session', '--auth-type', 'scram'], '--auth-type must be one of trust, md5, scram-sha-256, passthrough, got "scram"'],
    [['--auth-type', 'passthrough'], '--auth-type passthrough needs --pool-mode session or transaction'],
    [['--pool-mode', 'transaction', '--auth-type', 'passthrough', '--auth-query'], '--auth-type passthrough takes no --auth-file or --auth-query'],
    [['--pool-mode', 'session', '--auth-type', 'passthrough', '--auth-file', '/nonexistent'], '--auth-type passthrough takes no --auth-file or --auth-query'],
    [['--auth-file', '/nonexistent'], '--auth-file and --auth-query need --pool-mode session or transaction'],
    [['--admin-users', 'ops'], '--admin-users needs --pool-mode session or transaction'],
    [['--ignore-startup-parameters', 'work_mem'], '--ignore-startup-parameters needs --pool-mode session or transaction'],
    [['--track-extra-parameters', 'statement_timeout'], '--track-extra-parameters needs --pool-mode session or transaction'],
    [['--pool-mode', 'transaction', '--auth-type', 'trust', '--track-extra-parameters', 'statement_timeout,search_path'], 'search_path cannot be tracked: a pool serves one version'],
    [['--pool-mode', 'transaction', '--auth-type', 'trust', '--max-user-connections', '-1'], '--max-user-connections'],
    [['--pool-mode', 'transaction', '--auth-type', 'trust', '--admin-users', 'ops team'], '--admin-users takes user names separated by commas'],
    [['--pool-mode', 'transaction', '--auth-type', 'trust', '--query-wait-timeout', 'soon'], '--query-wait-timeout must be a duration'],
  ])('refuses %j with exit 2', async (flags, message) => {
    const result = await runCli(['proxy', '--listen', '127.0.0.1:0', ...flags], { postgresUrl: db.url });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
  });

  it('refuses an auth file it cannot read, naming the line, before listening', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'tandem-userlist-')), 'userlist.txt');
    writeFileSync(file, '"alice" "secret"\nbob secret\n');
    const result = await runCli(['proxy', '--listen', '127.0.0.1:0', '--pool-mode', 'transaction', '--auth-file', file], { postgresUrl: db.url });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`${file}:2`);
    expect(result.stderr).not.toContain('secret"');
  });

  it('runs a transaction-mode proxy whose /metrics and /status show its pools', async () => {
    const [port, http] = [await freePort(), await freePort()];
    const cli = spawnCli(['--postgres-url', db.url, 'proxy', '--listen', `127.0.0.1:${port}`, '--http', `127.0.0.1:${http}`, '--pool-mode', 'transaction', '--auth-type', 'trust', '--pool-size', '3', '--max-user-connections', '3', '--ignore-startup-parameters', 'Statement_Timeout', '--track-extra-parameters', 'Client_Min_Messages', '--shutdown-grace', '1s']);
    try {
      await waitFor(async () => (cli.stderr().includes('tandem proxy listening') ? true : undefined), 30_000, 'the listening line');
      // statement_timeout is ignored, as asked, instead of refused.
      const clients = Array.from({ length: 6 }, () => new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/${databaseOf(db.url)}`, statement_timeout: 5000 }));
      for (const client of clients) client.on('error', () => {});
      await Promise.all(clients.map((c) => c.connect()));
      await Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.05)')));
      const metrics = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
      expect(metrics).toMatch(/tandem_proxy_pool_server_connections_idle\{database="[^"]+",user="postgres",version="none"\} [1-3]/);
      // A lease per query, and one per login while the pool's parameters are not known yet.
      const leases = Number(/tandem_proxy_pool_wait_seconds_count\{database="[^"]+",version="none"\} (\d+)/.exec(metrics)?.[1]);
      expect(leases).toBeGreaterThanOrEqual(6);
      expect(leases).toBeLessThanOrEqual(12);
      const status = (await (await fetch(`http://127.0.0.1:${http}/status`)).json()) as { poolMode: string; pools: Array<{ user: string; opened: number }>; users: unknown };
      expect(status.poolMode).toBe('transaction');
      expect(status.users).toEqual({ maxUserConnections: 3, connections: [{ user: 'postgres', connections: expect.any(Number) }] });
      expect(status.pools).toEqual([expect.objectContaining({ user: 'postgres' })]);
      expect(status.pools[0]!.opened).toBeLessThanOrEqual(3);
      // client_min_messages is carried, as asked, instead of refused.
      const quiet = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/${databaseOf(db.url)}`, options: '-c client_min_messages=error' });
      await quiet.connect();
      expect((await quiet.query('SHOW client_min_messages')).rows).toEqual([{ client_min_messages: 'error' }]);
      await quiet.end();
      await Promise.all(clients.map((c) => c.end()));
    } finally {
      cli.child.kill('SIGTERM');
      await cli.exit;
    }
  });
});
