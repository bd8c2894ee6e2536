/**
 * The upstream check against a real PostgreSQL (it keeps the search_path startup parameter) and a
 * real PgBouncer in front of it (which does not carry it to its server connections).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { checkUpstream, upstreamCheckError, type UpstreamCheckFailure } from '../../src/proxy/upstream-check.js';
import { upstreamTarget } from '../../src/proxy/upstream.js';
import { usePostgres } from '../support/harness.js';
import { pgbouncerMissing, startPgBouncer, type TestPgBouncer } from '../support/pgbouncer.js';
import { databaseOf } from './support.js';

const missing = pgbouncerMissing();
if (missing) console.log(`skipping the PgBouncer cases of the upstream check: ${missing}`);

describe('upstream check', () => {
  const pg = usePostgres();
  let bouncer: TestPgBouncer | undefined;
  afterEach(async () => {
    await bouncer?.stop();
    bouncer = undefined;
  });

  const login = () => ({ user: pg.server.user, database: databaseOf(pg.url) });

  it('passes against PostgreSQL itself', async () => {
    expect(await checkUpstream(upstreamTarget(pg.url, 10_000), login())).toEqual({ ok: true });
  });

  it.skipIf(missing)('fails through a transaction-mode PgBouncer that drops search_path, naming the cause and the ways out', async () => {
    bouncer = await startPgBouncer({ host: pg.server.host, port: pg.server.port, database: databaseOf(pg.url), poolMode: 'transaction', ignoreStartupParameters: ['search_path'] });
    const result = await checkUpstream(upstreamTarget(`postgres://127.0.0.1:${bouncer.port}/`, 10_000), login());
    expect(result).toMatchObject({ ok: false, failure: { cause: 'search_path_ignored', upstream: `127.0.0.1:${bouncer.port}` } });
    const failure = (result as { failure: UpstreamCheckFailure & { cause: 'search_path_ignored' } }).failure;
    expect(failure.expected).toMatch(/^tandem_probe_[0-9a-f]{12}$/);
    expect(failure.seen).toBe('"$user", public');
    const error = upstreamCheckError(failure);
    expect(error).toMatchObject({ severity: 'FATAL', code: '08004' });
    expect(error.detail).toContain('has search_path ""$user", public"');
    expect(error.hint).toMatch(/Let tandem do the pooling.*PostgreSQL 18.*track_extra_parameters.*session mode does not/);
  });

  it.skipIf(missing)('fails through a PgBouncer that refuses the parameter, with its message', async () => {
    bouncer = await startPgBouncer({ host: pg.server.host, port: pg.server.port, database: databaseOf(pg.url), poolMode: 'transaction' });
    const result = await checkUpstream(upstreamTarget(`postgres://127.0.0.1:${bouncer.port}/`, 10_000), login());
    expect(result).toMatchObject({ ok: false, failure: { cause: 'search_path_refused', serverMessage: 'unsupported startup parameter: search_path' } });
  });

  it.skipIf(missing)('fails through a session-mode PgBouncer too: it does not forward startup parameters in any mode', async () => {
    bouncer = await startPgBouncer({ host: pg.server.host, port: pg.server.port, database: databaseOf(pg.url), poolMode: 'session', ignoreStartupParameters: ['search_path'] });
    const result = await checkUpstream(upstreamTarget(`postgres://127.0.0.1:${bouncer.port}/`, 10_000), login());
    expect(result).toMatchObject({ ok: false, failure: { cause: 'search_path_ignored', seen: '"$user", public' } });
  });
});
