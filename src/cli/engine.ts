import { InvalidArgumentError, type Command } from 'commander';
import { connect } from '../db/connection.js';
import { DEFAULT_RETRY } from '../engine/executor.js';
import { Migrator } from '../engine/migrator.js';
import { UsageError } from '../errors/index.js';
import { createBackfillMetrics } from '../observe/backfill-metrics.js';
import { startHttpServer } from '../observe/http.js';
import { parseHostPort } from '../proxy/config.js';
import { backfillReporter, type BackfillProgress } from '../observe/progress.js';
import type { CliIO } from './io.js';
import { commonSettings, type CommonSettings } from './settings.js';

/** Options of the commands that run migrations (start, complete, rollback, migrate, backfill). */
export function addEngineOptions(command: Command): Command {
  return command
    .option('--stall-timeout <seconds>', 'report a backfill as stalled after this long without progress', parseSeconds, 60)
    .option('--metrics-listen <host:port>', 'serve Prometheus /metrics (backfill progress) and /status while the command runs')
    .option(
      '--reconnect-timeout <seconds>',
      'when the connection to PostgreSQL is lost (a restart, a failover), keep reconnecting this long, then go on where the run stopped',
      parseSecondsFor('--reconnect-timeout'),
      60,
    );
}

function parseSecondsFor(flag: string): (value: string) => number {
  return (value) => {
    const seconds = Number(value);
    if (!Number.isFinite(seconds) || seconds <= 0) throw new InvalidArgumentError(`${flag} must be a positive number of seconds, got "${value}"`);
    return seconds;
  };
}

const parseSeconds = parseSecondsFor('--stall-timeout');

/** Opens the connection, builds a Migrator from the flags, runs `body`, closes. */
export async function withMigrator<T>(command: Command, io: CliIO, body: (migrator: Migrator, settings: CommonSettings) => Promise<T>): Promise<T> {
  const settings = commonSettings(command);
  const options = command.opts<{ stallTimeout?: number; metricsListen?: string; reconnectTimeout?: number }>();
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
  const open = () => connect(settings.postgresUrl, { applicationName: 'tandem', role: settings.role });
  const db = await open().catch(async (error: unknown) => {
    await http?.close();
    throw error;
  });
  let migrator: Migrator | undefined;
  try {
    migrator = new Migrator(db, {
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
      reconnect: { connect: open, timeoutMs: (options.reconnectTimeout ?? 60) * 1000 },
    });
    return await body(migrator, settings);
  } finally {
    await db.end().catch(() => {});
    if (migrator && migrator.connection !== db) await migrator.connection.end().catch(() => {});
    await http?.close();
  }
}
