/** `tandem proxy` as a process: JSON logs, SIGTERM drain, and the grace period running out. */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/postgres.js';
import { usePostgres } from '../support/harness.js';
import { spawnCli, waitFor } from '../support/spawn.js';
import { TWO_SHAPES, connectThrough, createUsersTable, databaseOf, simulateVersions, startTestProxy } from './support.js';

describe('proxy shutdown', () => {
  const pg = usePostgres();

  it('on SIGTERM stops accepting, lets sessions finish, closes the rest on a second signal, exits 0', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const port = await freePort();
    const cli = spawnCli(['--postgres-url', pg.url, 'proxy', '--listen', `127.0.0.1:${port}`, '--shutdown-grace', '10m']);
    const logs = () =>
      cli
        .stderr()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const logged = (what: string, test: (line: Record<string, unknown>) => boolean) =>
      waitFor(async () => (logs().some(test) ? true : undefined), 30_000, what);
    try {
      await logged('the listening line', (l) => l.msg === 'tandem proxy listening');
      const url = `postgres://postgres@127.0.0.1:${port}/${databaseOf(pg.url)}@01_init`;
      const finishing = await connectThrough(url);
      const lingering = await connectThrough(url);
      await finishing.query('SELECT 1');

      cli.child.kill('SIGTERM');
      await logged('the draining line', (l) => typeof l.msg === 'string' && l.msg.startsWith('shutting down'));
      await expect(connectThrough(url)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      // Sessions still open keep working during the grace period.
      expect((await finishing.query('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
      await finishing.end();
      // The client sees its connection end a moment before the proxy hears of it: the second signal
      // must not come first, or it would close that session as well.
      await logged('the finished session closing', (l) => l.event === 'close' && l.reason === 'client disconnected');

      const told = new Promise<unknown>((resolve) => lingering.once('error', resolve));
      cli.child.kill('SIGTERM');
      expect(await told).toMatchObject({ code: '57P01', message: 'terminating connection: the tandem proxy is shutting down' });
      expect(await cli.exit).toBe(0);

      const opened = logs().filter((l) => l.event === 'open');
      expect(opened).toHaveLength(2);
      expect(opened[0]).toMatchObject({ version: 'public_01_init', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
      const closed = logs().filter((l) => l.event === 'close');
      expect(closed.map((l) => l.reason).sort()).toEqual(['client disconnected', 'proxy shutdown']);
      expect(closed[0]).toMatchObject({ durationMs: expect.any(Number), bytesIn: expect.any(Number), bytesOut: expect.any(Number) });
    } finally {
      if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
    }
  });

  it('with a busy --http or --listen address, exits 1 naming it and leaves nothing running', async () => {
    await createUsersTable(pg.url);
    await simulateVersions(pg.url, TWO_SHAPES);
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const busyPort = (busy.address() as net.AddressInfo).port;
    try {
      for (const flag of ['--http', '--listen'] as const) {
        const port = await freePort();
        const listen = flag === '--listen' ? busyPort : port;
        const cli = spawnCli(['--postgres-url', pg.url, 'proxy', '--listen', `127.0.0.1:${listen}`, '--http', `127.0.0.1:${flag === '--http' ? busyPort : port}`, '--heartbeat-interval', '50ms']);
        try {
          // It must exit by itself: before the fix it kept serving clients without its HTTP endpoint.
          expect(await cli.exit).toBe(1);
        } finally {
          if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
        }
        expect(cli.stderr()).toContain(`the proxy cannot listen on 127.0.0.1:${busyPort} (${flag}): the address is already in use`);
        expect(cli.stderr()).not.toContain('tandem proxy listening');
        await expect(connectThrough(`postgres://postgres@127.0.0.1:${port}/${databaseOf(pg.url)}`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
        expect((await pg.query('SELECT count(*)::int AS n FROM tandem.proxies')).rows[0]!.n).toBe(0);
      }
    } finally {
      busy.close();
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
