import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { redactPassword, resolvePostgresUrl } from '../src/db/connection.js';
import { UsageError } from '../src/errors/index.js';
import { runCli } from './support/cli.js';

const HINT = 'hint: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE';

describe('--postgres-url and DATABASE_URL are checked before anything connects', () => {
  const saved = process.env.DATABASE_URL;
  afterEach(() => {
    if (saved === undefined) delete process.env.DATABASE_URL;
    else process.env.DATABASE_URL = saved;
  });

  it('a value that is not a URL is bad usage (exit 2) naming the flag and the value, for every command that connects', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-url-'));
    const file = join(dir, '01_t.yaml');
    await writeFile(file, 'operations:\n  - drop_table: {name: t}\n');
    for (const args of [['status'], ['init'], ['latest'], ['start', file], ['start', file, '--dry-run'], ['complete'], ['rollback'], ['migrate', dir], ['proxy']]) {
      const result = await runCli(['--postgres-url', 'not a url', ...args]);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toBe(
        `tandem: --postgres-url "not a url" is not a PostgreSQL connection URL: it does not start with postgres://\n` +
          `${HINT}[?sslmode=require…] (postgresql:// works too); leave it out to use DATABASE_URL or the PG* variables\n`,
      );
      expect(result.stderr).not.toContain('could not connect');
    }
  });

  it('says what is wrong with it and never prints the password', async () => {
    const cases: [string, string][] = [
      ['mysql://app:s3cret@db/app', '"mysql://app:***@db/app" is not a PostgreSQL connection URL: its scheme is "mysql:", not postgres: or postgresql:'],
      ['postgres://app:s3cret@db:port/app', '"postgres://app:***@db:port/app" is not a PostgreSQL connection URL: it cannot be read as a URL'],
      ['app:s3cret@db/app', '"app:***@db/app" is not a PostgreSQL connection URL: it does not start with postgres://'],
      ['host=db password=s3cret', '"host=db password=***" is not a PostgreSQL connection URL: it does not start with postgres://'],
      ['', '"" is not a PostgreSQL connection URL: it is empty'],
    ];
    for (const [url, message] of cases) {
      const result = await runCli(['--postgres-url', url, 'status']);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`--postgres-url ${message}`);
      expect(result.stderr).not.toContain('s3cret');
    }
  });

  it('checks DATABASE_URL the same way, naming it', async () => {
    process.env.DATABASE_URL = 'base';
    const result = await runCli(['status']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('tandem: DATABASE_URL "base" is not a PostgreSQL connection URL: it does not start with postgres://');
    expect(result.stderr).toContain('fix DATABASE_URL, or unset it to use the PG* variables');
    // --postgres-url wins over DATABASE_URL, as before.
    expect(resolvePostgresUrl('postgres://db/app', { DATABASE_URL: 'base' })).toBe('postgres://db/app');
  });

  it('accepts the URLs node-postgres accepts', () => {
    for (const url of [
      'postgres://app:s3cret@db.example.com:5433/app?sslmode=require',
      'postgresql://localhost/app',
      'postgres:///app?host=/var/run/postgresql',
      'postgres://app@[::1]:5432/app',
      'POSTGRES://db/app',
    ]) {
      expect(resolvePostgresUrl(url, {})).toBe(url);
    }
    expect(resolvePostgresUrl(undefined, {})).toBeUndefined();
    expect(resolvePostgresUrl(undefined, { DATABASE_URL: 'postgres://db/app' })).toBe('postgres://db/app');
    expect(() => resolvePostgresUrl('nope', {})).toThrow(UsageError);
    expect(redactPassword('postgres://app:s3cret@db/app')).toBe('postgres://app:***@db/app');
  });
});
