import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { freePort } from './support/postgres.js';
import { spawnCli, waitFor } from './support/spawn.js';

const run = promisify(execFile);

describe('tandem dev', () => {
  it('starts PostgreSQL, applies the example migrations, serves both versions through the proxy, watches, stops on Ctrl-C', async () => {
    const port = await freePort();
    const http = await freePort();
    const folder = await mkdtemp(join(tmpdir(), 'tandem-dev-migrations-'));
    const examples = join(process.cwd(), 'examples', 'migrations');
    for (const name of ['01_create_users.yaml', '02_rename_email.yaml']) {
      await writeFile(join(folder, name), await (await import('node:fs/promises')).readFile(join(examples, name)));
    }
    const dev = spawnCli(['dev', folder, '--listen', `127.0.0.1:${port}`, '--http', `127.0.0.1:${http}`, '--watch', '--log-level', 'warn']);
    try {
      await waitFor(async () => (dev.stdout().includes('Ctrl-C stops everything') ? true : undefined), 60_000, 'tandem dev to be ready');
      expect(dev.stdout()).toContain(`postgres://postgres@127.0.0.1:${port}/postgres@02_rename_email`);
      expect(dev.stdout()).toContain(`postgres://postgres@127.0.0.1:${port}/postgres@01_create_users`);
      const psql = (version: string, sql: string) => run('psql', ['-X', '-A', '-t', '-c', sql, `postgres://postgres@127.0.0.1:${port}/postgres@${version}`]);
      await psql('01_create_users', `INSERT INTO users (name, email) VALUES ('ann', NULL)`);
      expect((await psql('latest', 'SELECT email_address FROM users')).stdout.trim()).toBe('unknown-1@example.invalid');

      // A new migration file: the active one is completed, the new one started.
      await writeFile(join(folder, '03_add_nickname.yaml'), 'operations:\n  - add_column:\n      table: users\n      column: {name: nickname, type: text, nullable: true}\n');
      await waitFor(async () => (dev.stdout().includes('started 03_add_nickname') ? true : undefined), 30_000, 'the new migration');
      expect((await psql('03_add_nickname', 'SELECT email_address, nickname IS NULL FROM users')).stdout.trim()).toBe('unknown-1@example.invalid|t');

      dev.child.kill('SIGINT');
      expect(await dev.exit).toBe(0);
      expect(dev.stdout()).toContain('stopping: proxy, then PostgreSQL');
    } finally {
      dev.child.kill('SIGKILL');
    }
  });
});
