import type { Logger } from './logger.js';

/** What a running backfill reports as it goes; defined here so that the engine depends on observe and not back. */
export interface BackfillProgress {
  table: string;
  method: string;
  rowsDone: number;
  rowsTotal: number | null;
  rowsPerSecond: number | null;
  batches: number;
  retries: number;
  stalled: boolean;
  /** While the backfill holds back its batches on purpose: why (replica_lag, load, lock_waiters, manual), in words, and for how long. */
  throttle: { reason: string; detail: string; seconds: number } | null;
  /** Seconds throttled in all during this run. */
  throttledSeconds: number;
  /** The largest replica lag last measured, when replicas are watched. */
  replicaLagSeconds: number | null;
  /** Rows the next batch asks for when batches are sized to take --backfill-batch-time; null for the fixed --backfill-batch-size. */
  adaptiveBatchSize: number | null;
  done: boolean;
}

/**
 * Shows backfill progress: a live bar on a terminal (rows done / total, rate, ETA), else a pino
 * line at most every `intervalMs` and one when a table is done.
 */
export function backfillReporter(stream: NodeJS.WritableStream & { isTTY?: boolean }, logger: Logger, intervalMs = 5000): (p: BackfillProgress) => void {
  let lastLog = 0;
  let lastDraw = 0;
  return (progress) => {
    const now = Date.now();
    if (stream.isTTY) {
      if (!progress.done && !progress.stalled && !progress.throttle && now - lastDraw < 100) return;
      lastDraw = now;
      stream.write(`\r\x1b[2K${progressLine(progress)}${progress.done ? '\n' : ''}`);
      return;
    }
    if (progress.done || progress.stalled || now - lastLog >= intervalMs) {
      lastLog = now;
      logger.info({ backfill: progress }, progressLine(progress));
    }
  };
}

export function progressLine(p: BackfillProgress): string {
  const total = p.rowsTotal && p.rowsTotal > 0 ? Math.max(p.rowsTotal, p.rowsDone) : null;
  const fraction = p.done ? 1 : total ? Math.min(1, p.rowsDone / total) : 0;
  const width = 24;
  const filled = Math.round(fraction * width);
  const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
  const rate = p.rowsPerSecond ? `${compact(p.rowsPerSecond)} rows/s` : '– rows/s';
  const remaining = total && p.rowsPerSecond && !p.done ? Math.max(0, (total - p.rowsDone) / p.rowsPerSecond) : null;
  const eta = p.done ? 'done' : remaining !== null ? `ETA ${duration(remaining)}` : 'ETA –';
  const state = p.throttle
    ? ` THROTTLED ${p.throttle.reason} for ${duration(p.throttle.seconds)} (${p.throttle.detail})`
    : p.stalled
      ? ' STALLED (waiting for a lock)'
      : '';
  const batch = p.adaptiveBatchSize !== null && !p.done ? ` · batch ${compact(p.adaptiveBatchSize)}` : '';
  return `backfill ${p.table} ${bar} ${Math.round(fraction * 100)}% ${compact(p.rowsDone)}/${total ? compact(total) : '?'} rows · ${rate}${batch} · ${eta}${state}`;
}

function compact(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  return String(Math.round(n));
}

export function duration(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.ceil(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}
