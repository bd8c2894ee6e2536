/**
 * tandem_proxy_pool_wait_seconds: how long pooled clients waited for a server connection. Clients
 * forwarded in Node are observed here one lease at a time; clients the native thread forwards take
 * their connections there, transaction by transaction, and the thread counts their waits in the same
 * buckets (session/native-pooled.ts). Both sum into one histogram at scrape time, so a prom-client
 * Histogram (which can only observe one value at a time) does not fit: this is a prom-client metric
 * of its own, registered like any other.
 */
import type { Registry } from 'prom-client';

/** Bounds of the histogram, in seconds (the native forwarder counts in the same buckets). */
export const POOL_WAIT_BUCKETS: readonly number[] = [0, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120];

/** Waits of one label set: per bucket of POOL_WAIT_BUCKETS (not cumulative), then one above the last. */
export interface WaitCounts {
  database: string;
  version: string;
  count: number;
  sumSeconds: number;
  buckets: number[];
}

type Labels = Record<string, string | number>;

export class WaitHistogram {
  readonly name = 'tandem_proxy_pool_wait_seconds';
  readonly help = 'How long clients waited for a server connection of their pool (0 when one was free)';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly observed = new Map<string, WaitCounts>();
  /** The native forwarder's waits, read at scrape time. */
  native: (() => WaitCounts[]) | undefined;

  constructor(registry: Registry) {
    registry.registerMetric(this as never);
  }

  observe(database: string, version: string, seconds: number): void {
    const counts = this.countsOf(this.observed, database, version);
    counts.count++;
    counts.sumSeconds += seconds;
    let bucket = 0;
    while (bucket < POOL_WAIT_BUCKETS.length && seconds > POOL_WAIT_BUCKETS[bucket]!) bucket++;
    counts.buckets[bucket]!++;
  }

  reset(): void {
    this.observed.clear();
  }

  /** prom-client's Metric: the buckets (cumulative, as exposed), sum and count per label set. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Array<{ value: number; labels: Labels; metricName: string }> }> {
    const merged = new Map<string, WaitCounts>();
    for (const counts of [...this.observed.values(), ...(this.native?.() ?? [])]) {
      const into = this.countsOf(merged, counts.database, counts.version);
      into.count += counts.count;
      into.sumSeconds += counts.sumSeconds;
      counts.buckets.forEach((n, i) => (into.buckets[i] = (into.buckets[i] ?? 0) + n));
    }
    const values: Array<{ value: number; labels: Labels; metricName: string }> = [];
    for (const counts of merged.values()) {
      const labels = { database: counts.database, version: counts.version };
      let cumulative = 0;
      POOL_WAIT_BUCKETS.forEach((bound, i) => {
        cumulative += counts.buckets[i] ?? 0;
        values.push({ value: cumulative, labels: { le: bound, ...labels }, metricName: `${this.name}_bucket` });
      });
      values.push({ value: counts.count, labels: { le: '+Inf', ...labels }, metricName: `${this.name}_bucket` });
      values.push({ value: counts.sumSeconds, labels, metricName: `${this.name}_sum` });
      values.push({ value: counts.count, labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  private countsOf(map: Map<string, WaitCounts>, database: string, version: string): WaitCounts {
    const id = `${database}\0${version}`;
    let counts = map.get(id);
    if (!counts) {
      counts = { database, version, count: 0, sumSeconds: 0, buckets: new Array<number>(POOL_WAIT_BUCKETS.length + 1).fill(0) };
      map.set(id, counts);
    }
    return counts;
  }
}
