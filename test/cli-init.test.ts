import { describe, expect, it } from 'vitest';
import { usePostgres } from './support/harness.js';
import { runCli } from './support/cli.js';

describe('tandem init', () => {
  const pg = usePostgres();

  it('creates the state schema and can run again', async () => {
    const first = await runCli(['init'], { postgresUrl: pg.url });
    expect(first).toMatchObject({ code: 0 });
    expect(first.stdout).toContain('state schema "tandem" is ready');
    const again = await runCli(['init'], { postgresUrl: pg.url });
    expect(again.code).toBe(0);
    const { rows } = await pg.query(`SELECT value FROM tandem.meta WHERE key = 'state_version'`);
    expect(rows).toEqual([{ value: '4' }]);
  });

  it('honours --state-schema', async () => {
    const result = await runCli(['init', '--state-schema', 'tandem_state'], { postgresUrl: pg.url });
    expect(result.code).toBe(0);
    const { rows } = await pg.query(`SELECT to_regclass('tandem_state.migrations') IS NOT NULL AS ok`);
    expect(rows[0]!.ok).toBe(true);
  });

  it('runs concurrently without errors', async () => {
    const results = await Promise.all([1, 2, 3, 4].map(() => runCli(['init'], { postgresUrl: pg.url })));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0]);
  });

  it('fails with exit 1 and a clear message when the server is unreachable', async () => {
    const result = await runCli(['init'], { postgresUrl: 'postgres://nobody@127.0.0.1:1/none' });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/ECONNREFUSED|connect/);
  });

  it('rejects bad flags with exit 2', async () => {
    const result = await runCli(['init', '--lock-timeout', 'soon'], { postgresUrl: pg.url });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--lock-timeout must be a positive whole number');
  });
});
