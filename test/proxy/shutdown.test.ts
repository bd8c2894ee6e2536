/** `tandem proxy` as a process: JSON logs, SIGTERM drain, and the grace period running out. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/postgres.js';
import { usePostgres } from '../support/harness.js';
import { TWO_SHAPES, connectThrough, createUsersTable, databaseOf, simulateVersions, startTestProxy } from './support.js';

describe('proxy shutdown', () => {
  const pg = usePostgres();

  it('on SIGTERM stops accepting, lets sessions finish, closes the rest on a second signal, exits 0', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const port = await freePort();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/proxy/fixtures/tandem.ts', '--postgres-url', pg.url, 'proxy', '--listen', `127.0.0.1:${port}`, '--shutdown-grace', '10m'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TANDEM_LOG_LEVEL: 'info' } },
    );
    const exited = once(child, 'exit');
    const logs: Array<Record<string, unknown>> = [];
    const waiters: Array<{ test: (line: Record<string, unknown>) => boolean; resolve: () => void }> = [];
    createInterface({ input: child.stderr! }).on('line', (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      logs.push(line);
      for (const waiter of waiters.filter((w) => w.test(line))) waiter.resolve();
    });
    const logged = (test: (line: Record<string, unknown>) => boolean) =>
      logs.some(test) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ test, resolve }));
    try {
      await logged((l) => l.msg === 'tandem proxy listening');
      const url = `postgres://postgres@127.0.0.1:${port}/${databaseOf(pg.url)}@01_init`;
      const finishing = await connectThrough(url);
      const lingering = await connectThrough(url);
      await finishing.query('SELECT 1');

      child.kill('SIGTERM');
      await logged((l) => typeof l.msg === 'string' && l.msg.startsWith('shutting down'));
      await expect(connectThrough(url)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      // Sessions still open keep working during the grace period.
      expect((await finishing.query('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
      await finishing.end();

      const told = new Promise<unknown>((resolve) => lingering.once('error', resolve));
      child.kill('SIGTERM');
      expect(await told).toMatchObject({ code: '57P01', message: 'terminating connection: the tandem proxy is shutting down' });
      const [code] = await exited;
      expect(code).toBe(0);

      const opened = logs.filter((l) => l.event === 'open');
      expect(opened).toHaveLength(2);
      expect(opened[0]).toMatchObject({ version: 'public_01_init', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
      const closed = logs.filter((l) => l.event === 'close');
      expect(closed.map((l) => l.reason).sort()).toEqual(['client disconnected', 'proxy shutdown']);
      expect(closed[0]).toMatchObject({ durationMs: expect.any(Number), bytesIn: expect.any(Number), bytesOut: expect.any(Number) });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('ends sessions still open when the grace period runs out', async () => {
    const proxy = await startTestProxy(pg.url);
    const client = await connectThrough(proxy.url(databaseOf(pg.url)));
    const told = new Promise<unknown>((resolve) => client.once('error', resolve));
    await proxy.shutdown(50);
    expect(await told).toMatchObject({ code: '57P01' });
  });
});
