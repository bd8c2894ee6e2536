import { createServer } from 'node:net';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmbeddedPostgres } from '../src/dev/embedded.js';
import { usePostgres } from './support/harness.js';
import { startOnFreePort } from './support/postgres.js';

describe('test harness', () => {
  const pg = usePostgres();

  it('gives each test a fresh database on a real server', async () => {
    const { rows } = await pg.query<{ db: string; version: string }>('SELECT current_database() AS db, version()');
    expect(rows[0]!.db).toMatch(/^t_[0-9a-f]{12}$/);
    expect(rows[0]!.version).toMatch(/^PostgreSQL \d+/);
    await pg.query('CREATE TABLE only_here (id int)');
  });

  it('does not share databases between tests', async () => {
    const { rows } = await pg.query(`SELECT to_regclass('only_here') AS t`);
    expect(rows[0]!.t).toBeNull();
  });

  it('starts a server on another port when the free one it picked was taken meanwhile', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as { port: number }).port;
    const dir = await mkdtemp(join(tmpdir(), 'tandem-harness-'));
    // As root the server runs as `postgres`, which must reach its data directory.
    await chmod(dir, 0o755);
    const ports: number[] = [];
    let server: EmbeddedPostgres | undefined;
    try {
      server = await startOnFreePort((port) => {
        // The first attempt gets the port someone else holds, as when another process took it.
        const chosen = ports.length === 0 ? takenPort : port;
        ports.push(chosen);
        return new EmbeddedPostgres({ dataDir: join(dir, 'data'), port: chosen, settings: { fsync: 'off' } });
      });
      expect(ports).toHaveLength(2);
      expect(server.port).toBe(ports[1]);
    } finally {
      await server?.stop();
      taken.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
