/** Which statements pin a client to its server connection in transaction mode: a table of SQL and verdicts. */
import { beforeAll, describe, expect, it } from 'vitest';
import { effectsOf, loadPinningParser, pinningOf, type PinReason } from '../../../src/proxy/pool/pinning.js';
import { TrackedParameters } from '../../../src/proxy/pool/client-parameters.js';

beforeAll(() => loadPinningParser());

const cases: Array<[sql: string, reason: PinReason | undefined]> = [
  // session-level SET, also inside a transaction block; SET LOCAL and SET TRANSACTION end with it
  ['SET statement_timeout = 1000', 'set'],
  ['set search_path to app, public', 'set'],
  ['SET SESSION work_mem = \'64MB\'', 'set'],
  ['BEGIN; SET lock_timeout = 10; COMMIT', 'set'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', 'set'],
  ['/* app */ SET statement_timeout = 0', 'set'],
  ['-- tag\nSET work_mem = \'1MB\'', 'set'],
  // tracked parameters follow the client instead (client-parameters.ts), unless SET FROM CURRENT
  ['SET application_name = \'x\'', undefined],
  ['-- tag\nSET datestyle = iso', undefined],
  ['BEGIN; SET TimeZone = \'UTC\'; COMMIT', undefined],
  ['SET SESSION extra_float_digits = 3', undefined],
  ['SET datestyle FROM CURRENT', 'set'],
  ['SET LOCAL statement_timeout = 1000', undefined],
  ['BEGIN; SET LOCAL lock_timeout = 10; SELECT 1; COMMIT', undefined],
  ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', undefined],
  ['RESET statement_timeout', undefined],
  ['RESET ALL', undefined],
  ['UPDATE accounts SET balance = 0 WHERE id = $1', undefined],
  ['SELECT 1; UPDATE t SET a = 1', undefined],
  // LISTEN, SQL PREPARE, cursors WITH HOLD
  ['LISTEN jobs', 'listen'],
  ['SELECT 1; LISTEN "Jobs"', 'listen'],
  ['UNLISTEN *', undefined],
  ['PREPARE q(int) AS SELECT $1', 'prepare'],
  ['EXECUTE q(1)', undefined],
  ['DEALLOCATE q', undefined],
  ['DEALLOCATE ALL', undefined],
  // the proxy's own server-side names: the connection's record would be wrong for its next client
  ['DEALLOCATE tandem_9956689aab675644bd1ba2260ea331f3c3babaac', 'deallocate'],
  ['SELECT 1; DEALLOCATE PREPARE "tandem_9956689aab675644bd1ba2260ea331f3c3babaac"', 'deallocate'],
  ['DEALLOCATE TANDEM_X', 'deallocate'],
  ['DEALLOCATE "Tandem_x"', undefined],
  ["SELECT 'DEALLOCATE tandem_x'", undefined],
  ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'cursor_with_hold'],
  ['DECLARE c CURSOR FOR SELECT 1', undefined],
  ['DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1', undefined],
  // temporary objects, unless they go at commit
  ['CREATE TEMP TABLE scratch (a int)', 'temporary_object'],
  ['CREATE TEMPORARY TABLE scratch (a int)', 'temporary_object'],
  ['create table pg_temp.scratch (a int)', 'temporary_object'],
  ['CREATE TEMP VIEW v AS SELECT 1', 'temporary_object'],
  ['CREATE TEMP SEQUENCE s', 'temporary_object'],
  ['CREATE TEMP TABLE t AS SELECT 1', 'temporary_object'],
  ['SELECT 1 AS a INTO TEMP t', 'temporary_object'],
  ['CREATE TEMP TABLE scratch (a int) ON COMMIT DROP', undefined],
  ['CREATE TABLE template_copy (a int)', undefined],
  ['SELECT * FROM temperatures', undefined],
  // session advisory locks and set_config(…, false)
  ['SELECT pg_advisory_lock(42)', 'advisory_lock'],
  ['SELECT pg_catalog.pg_try_advisory_lock_shared(1, 2)', 'advisory_lock'],
  ['SELECT id FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1', 'advisory_lock'],
  ['SELECT pg_advisory_xact_lock(42)', undefined],
  ['SELECT pg_advisory_unlock(42)', undefined],
  ["SELECT set_config('app.user', $1, false)", 'set_config'],
  ["SELECT set_config('app.user', 'x', 'off')", 'set_config'],
  ["SELECT set_config('app.user', 'x', $2)", 'set_config'],
  ["SELECT set_config('app.user', 'x', true)", undefined],
  ["SELECT set_config('app.user', 'x', 'true'::boolean)", undefined],
  // the words inside strings, comments and quoted identifiers do not count
  ["SELECT 'SET x = 1; LISTEN y'", undefined],
  ['SELECT 1 -- LISTEN later\n', undefined],
  ['SELECT 1 /* PREPARE p AS SELECT 1 */', undefined],
  ['SELECT "listen", "prepare", "hold", "temp" FROM "set"', undefined],
  ["SELECT $$ pg_advisory_lock(1) $$", undefined],
  ["INSERT INTO notes (body) VALUES ('create temp table x; set_config(a, b, false)')", undefined],
  ['SELECT * FROM holdings WHERE temp > 3', undefined],
  // what the parser rejects pools (the server rejects it too)
  ['SET = broken', undefined],
  ['', undefined],
];

describe('pinningOf', () => {
  it.each(cases)('%j → %s', (sql, reason) => {
    expect(pinningOf(sql)?.reason).toBe(reason);
  });

  it('names what it saw, for the log line', () => {
    expect(pinningOf('SET statement_timeout = 5')).toEqual({ reason: 'set', detail: 'SET statement_timeout' });
    expect(pinningOf('LISTEN jobs')).toEqual({ reason: 'listen', detail: 'LISTEN jobs' });
    expect(pinningOf('CREATE TEMP TABLE scratch (a int)')).toEqual({ reason: 'temporary_object', detail: 'temporary scratch' });
    expect(pinningOf('SELECT pg_advisory_lock(1)')).toEqual({ reason: 'advisory_lock', detail: 'pg_advisory_lock()' });
  });
});

describe('tracked settings a statement changes', () => {
  it.each([
    ['SET extra_float_digits = 3', [{ name: 'extra_float_digits', value: '3' }]],
    ['set Extra_Float_Digits to -1', [{ name: 'extra_float_digits', value: '-1' }]],
    ['SET extra_float_digits TO DEFAULT', [{ name: 'extra_float_digits', value: null }]],
    ['RESET extra_float_digits', [{ name: 'extra_float_digits', value: null }]],
    ['RESET ALL', [{ name: 'extra_float_digits', value: null }]],
    ['DISCARD ALL', [{ name: 'extra_float_digits', value: null }]],
    // the server reports the others' changes itself; SET LOCAL ends with its transaction
    ["SET TimeZone = 'UTC'", []],
    ['SET LOCAL extra_float_digits = 0', []],
    ['SELECT 1', []],
  ])('%s', (sql, settings) => {
    expect(effectsOf(sql)).toEqual({ pinning: undefined, settings });
  });
});

describe('settings --track-extra-parameters names', () => {
  const tracked = new TrackedParameters(['statement_timeout', 'myext.mode']);
  it.each([
    ["SET statement_timeout = '5s'", [{ name: 'statement_timeout', value: '5s' }]],
    ['SET Statement_Timeout TO 5000', [{ name: 'statement_timeout', value: '5000' }]],
    ["SET myext.mode = 'fast'", [{ name: 'myext.mode', value: 'fast' }]],
    ['RESET statement_timeout', [{ name: 'statement_timeout', value: null }]],
    ['RESET ALL', [{ name: 'extra_float_digits', value: null }, { name: 'statement_timeout', value: null }, { name: 'myext.mode', value: null }]],
  ])('%s changes them and does not pin', (sql, settings) => {
    expect(effectsOf(sql, tracked)).toEqual({ pinning: undefined, settings });
  });

  it('pins for a setting they do not name, and for all of them without the flag', () => {
    expect(pinningOf("SET work_mem = '1MB'", tracked)).toEqual({ reason: 'set', detail: 'SET work_mem' });
    expect(pinningOf("SET statement_timeout = '5s'")).toEqual({ reason: 'set', detail: 'SET statement_timeout' });
  });
});
