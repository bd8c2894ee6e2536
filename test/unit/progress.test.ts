import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { backfillReporter, progressLine } from '../../src/observe/progress.js';
import { silentLogger } from '../../src/observe/logger.js';

const base = {
  table: 'users',
  method: 'primary key (id)',
  batches: 10,
  retries: 0,
  stalled: false,
  throttle: null,
  throttledSeconds: 0,
  replicaLagSeconds: null,
  adaptiveBatchSize: null,
  done: false,
};

describe('backfill progress', () => {
  it('shows rows done of total, rate and ETA', () => {
    expect(progressLine({ ...base, rowsDone: 250_000, rowsTotal: 1_000_000, rowsPerSecond: 125_000 })).toBe(
      'backfill users ██████░░░░░░░░░░░░░░░░░░ 25% 250k/1.0M rows · 125k rows/s · ETA 6s',
    );
    expect(progressLine({ ...base, rowsDone: 10, rowsTotal: null, rowsPerSecond: null, stalled: true })).toBe(
      'backfill users ░░░░░░░░░░░░░░░░░░░░░░░░ 0% 10/? rows · – rows/s · ETA – STALLED (waiting for a lock)',
    );
    expect(progressLine({ ...base, rowsDone: 1200, rowsTotal: 1000, rowsPerSecond: 600, done: true })).toContain('100% 1200/1200 rows');
  });

  it('says why a throttled backfill waits, and for how long', () => {
    const throttle = { reason: 'replica_lag', detail: 'walreceiver@127.0.0.1 is 4.2 s behind (limit 1 s)', seconds: 75 };
    expect(progressLine({ ...base, rowsDone: 500, rowsTotal: 1000, rowsPerSecond: 100, throttle })).toBe(
      'backfill users ████████████░░░░░░░░░░░░ 50% 500/1000 rows · 100 rows/s · ETA 5s THROTTLED replica_lag for 1m15s (walreceiver@127.0.0.1 is 4.2 s behind (limit 1 s))',
    );
  });

  it('shows the size of the next batch when batches are sized by time', () => {
    expect(progressLine({ ...base, rowsDone: 500, rowsTotal: 1000, rowsPerSecond: 100, adaptiveBatchSize: 25_000 })).toContain('100 rows/s · batch 25k · ETA 5s');
    expect(progressLine({ ...base, rowsDone: 1000, rowsTotal: 1000, rowsPerSecond: 100, adaptiveBatchSize: 25_000, done: true })).not.toContain('batch');
  });

  it('redraws one line on a terminal', () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true });
    let written = '';
    stream.on('data', (chunk: Buffer) => (written += chunk.toString()));
    const report = backfillReporter(stream, silentLogger());
    report({ ...base, rowsDone: 500, rowsTotal: 1000, rowsPerSecond: 1000 });
    report({ ...base, rowsDone: 1000, rowsTotal: 1000, rowsPerSecond: 1000, done: true });
    expect(written).toMatch(/^\r\x1b\[2Kbackfill users .* 50% 500\/1000 rows .*\r\x1b\[2Kbackfill users .* 100% .* done\n$/s);
  });
});
