import { Counter, Gauge, Registry } from 'prom-client';

/** Prometheus metrics of backfills, labelled by table. */
export interface BackfillMetrics {
  registry: Registry;
  rows: Counter<'table'>;
  batches: Counter<'table'>;
  retries: Counter<'table'>;
  lastProgress: Gauge<'table'>;
  stalled: Gauge<'table'>;
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
  };
}
