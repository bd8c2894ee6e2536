import { InvalidArgumentError, type Command } from 'commander';
import { connect } from '../db/connection.js';
import { DEFAULT_RETRY } from '../engine/executor.js';
import { Migrator } from '../engine/migrator.js';
import type { BackfillProgress } from '../engine/backfill.js';
import { UsageError } from '../errors.js';
import { createBackfillMetrics } from '../observe/backfill-metrics.js';
import { startHttpServer } from '../observe/http.js';
import { parseHostPort } from '../proxy/config.js';
import { backfillReporter } from '../observe/progress.js';
import type { CliIO } from './io.js';
import { commonSettings, type CommonSettings } from './settings.js';

/** Options of the commands that run migrations (start, complete, rollback, migrate, backfill). */
export function addEngineOptions(command: Command): Command {
  return command
    .option('--stall-timeout <seconds>', 'report a backfill as stalled after this long without progress', parseSeconds, 60)
    .option('--metrics-listen <host:port>', 'serve Prometheus /metrics (backfill progress) and /status while the command runs');
}

function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new InvalidArgumentError(`--stall-timeout must be a positive number of seconds, got "${value}"`);
  return seconds;
}

/** Opens the connection, builds a Migrator from the flags, runs `body`, closes. */
export async function withMigrator<T>(command: Command, io: CliIO, body: (migrator: Migrator, settings: CommonSettings) => Promise<T>): Promise<T> {
  const settings = commonSettings(command);
  const options = command.opts<{ stallTimeout?: number; metricsListen?: string }>();
  let listen;
  try {
    listen = options.metricsListen ? parseHostPort(options.metricsListen, '--metrics-listen') : undefined;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const metrics = createBackfillMetrics();
  const progress = new Map<string, BackfillProgress>();
  const report = backfillReporter(io.stderr, settings.logger);
  const http = listen
    ? await startHttpServer(
        listen,
        {
          readiness: async () => ({ ready: true, detail: {} }),
          metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
          status: () => ({ backfills: [...progress.values()] }),
        },
        settings.logger,
      )
    : undefined;
  const db = await connect(settings.postgresUrl, { applicationName: 'tandem' }).catch(async (error: unknown) => {
    await http?.close();
    throw error;
  });
  try {
    const migrator = new Migrator(db, {
      schema: settings.schema,
      stateSchema: settings.stateSchema,
      lockTimeoutMs: settings.lockTimeoutMs,
      retry: { ...DEFAULT_RETRY, attempts: settings.lockRetries },
      backfillBatchSize: settings.backfillBatchSize,
      backfillBatchDelayMs: settings.backfillBatchDelayMs,
      stallTimeoutMs: (options.stallTimeout ?? 60) * 1000,
      logger: settings.logger,
      metrics,
      onBackfillProgress: (p) => {
        progress.set(p.table, p);
        report(p);
      },
    });
    return await body(migrator, settings);
  } finally {
    await db.end().catch(() => {});
    await http?.close();
  }
}
