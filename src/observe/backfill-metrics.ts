import { Counter, Gauge, Registry } from 'prom-client';

/** Prometheus metrics of backfills, labelled by table. */
export interface BackfillMetrics {
  registry: Registry;
  rows: Counter<'table'>;
  batches: Counter<'table'>;
  retries: Counter<'table'>;
  lastProgress: Gauge<'table'>;
  stalled: Gauge<'table'>;
  throttled: Gauge<'table' | 'reason'>;
  throttledSeconds: Counter<'table' | 'reason'>;
  replicaLag: Gauge<'replica'>;
  batchSize: Gauge<'table'>;
}

export function createBackfillMetrics(registry = new Registry()): BackfillMetrics {
  return {
    registry,
    rows: new Counter({ name: 'tandem_backfill_rows_total', help: 'Rows backfilled', labelNames: ['table'], registers: [registry] }),
    batches: new Counter({ name: 'tandem_backfill_batches_total', help: 'Backfill batches committed', labelNames: ['table'], registers: [registry] }),
    retries: new Counter({
      name: 'tandem_backfill_retries_total',
      help: 'Backfill batches retried after a lock timeout',
      labelNames: ['table'],
      registers: [registry],
    }),
    lastProgress: new Gauge({
      name: 'tandem_backfill_last_progress_timestamp_seconds',
      help: 'Unix time of the last committed backfill batch',
      labelNames: ['table'],
      registers: [registry],
    }),
    stalled: new Gauge({
      name: 'tandem_backfill_stalled',
      help: '1 while a backfill has made no progress for longer than the stall timeout',
      labelNames: ['table'],
      registers: [registry],
    }),
    throttled: new Gauge({
      name: 'tandem_backfill_throttled',
      help: '1 while a backfill holds back its batches on purpose, labelled with the reason (replica_lag, load, lock_waiters, manual)',
      labelNames: ['table', 'reason'],
      registers: [registry],
    }),
    throttledSeconds: new Counter({
      name: 'tandem_backfill_throttled_seconds_total',
      help: 'Seconds a backfill held back its batches, by reason',
      labelNames: ['table', 'reason'],
      registers: [registry],
    }),
    replicaLag: new Gauge({
      name: 'tandem_backfill_replica_lag_seconds',
      help: 'How far each watched replica is behind, as the backfill last measured it (-1: gone or unreachable)',
      labelNames: ['replica'],
      registers: [registry],
    }),
    batchSize: new Gauge({
      name: 'tandem_backfill_batch_size',
      help: 'Rows the next backfill batch asks for (fixed, or sized by --backfill-batch-time)',
      labelNames: ['table'],
      registers: [registry],
    }),
  };
}
