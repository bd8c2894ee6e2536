import { InvalidArgumentError, type Command } from 'commander';
import { checkPostgresUrl, connect } from '../db/connection.js';
import { DEFAULT_RETRY } from '../engine/executor.js';
import { Migrator } from '../engine/migrator.js';
import { DEFAULT_MAX_ACTIVE_MIGRATIONS } from '../engine/stack.js';
import { readStatusFrom } from '../engine/status.js';
import { UsageError } from '../errors/index.js';
import { createBackfillMetrics } from '../observe/backfill-metrics.js';
import { startHttpServer } from '../observe/http.js';
import { parseHostPort } from '../proxy/config.js';
import { backfillReporter, type BackfillProgress } from '../observe/progress.js';
import { renderStatusPage } from '../observe/status-page.js';
import type { CliIO } from './io.js';
import { commonSettings, durationOption, nonNegativeInteger, positiveInteger, type CommonSettings } from './settings.js';
import type { ThrottleSettings } from '../engine/throttle.js';

/** Options of the commands that run migrations (start, complete, rollback, migrate, backfill). */
export function addEngineOptions(command: Command): Command {
  return command
    .option(
      '--max-active-migrations <n>',
      'how many migrations may be active at once: start stacks a migration on the active ones up to this (1: start refuses while one is active)',
      positiveInteger('--max-active-migrations'),
      DEFAULT_MAX_ACTIVE_MIGRATIONS,
    )
    .option('--stall-timeout <seconds>', 'report a backfill as stalled after this long without progress', parseSeconds, 60)
    .option('--metrics-listen <host:port>', 'serve Prometheus /metrics (backfill progress), /status and the status page at / while the command runs')
    .option(
      '--reconnect-timeout <seconds>',
      'when the connection to PostgreSQL is lost (a restart, a failover), keep reconnecting this long, then go on where the run stopped',
      parseSecondsFor('--reconnect-timeout'),
      60,
    )
    .option('--max-replica-lag <duration>', 'hold backfill batches while a streaming replica is further behind than this (e.g. 2s)', durationOption('--max-replica-lag'))
    .option(
      '--replica-url <url>',
      'a replica to ask for its lag directly, beyond those pg_stat_replication lists (repeatable; needs --max-replica-lag)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--max-active-backends <n>', 'hold backfill batches while more client sessions than this are active', nonNegativeInteger('--max-active-backends'))
    .option('--max-lock-waiters <n>', "hold backfill batches while more sessions than this wait on locks of the table", nonNegativeInteger('--max-lock-waiters'))
    .option('--throttle-file <path>', 'hold backfill batches while this file exists');
}

interface ThrottleOptions {
  maxReplicaLag?: number;
  replicaUrl?: string[];
  maxActiveBackends?: number;
  maxLockWaiters?: number;
  throttleFile?: string;
}

function throttleSettings(options: ThrottleOptions): ThrottleSettings {
  const replicaUrls = (options.replicaUrl ?? []).map((url) => checkPostgresUrl(url, '--replica-url'));
  if (replicaUrls.length && options.maxReplicaLag === undefined) {
    throw new UsageError('--replica-url needs --max-replica-lag: the lag the backfill waits for the replicas to be under');
  }
  return {
    maxReplicaLagMs: options.maxReplicaLag,
    replicaUrls,
    maxActiveBackends: options.maxActiveBackends,
    maxLockWaiters: options.maxLockWaiters,
    throttleFile: options.throttleFile,
  };
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
  const settings = commonSettings(command, { logTo: io.stderr });
  const options = command.opts<{ stallTimeout?: number; metricsListen?: string; reconnectTimeout?: number; maxActiveMigrations?: number } & ThrottleOptions>();
  const throttle = throttleSettings(options);
  let listen;
  try {
    listen = options.metricsListen ? parseHostPort(options.metricsListen, '--metrics-listen') : undefined;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const metrics = createBackfillMetrics();
  const progress = new Map<string, BackfillProgress>();
  const report = backfillReporter(io.stderr, settings.logger);
  // The page reads the state over a connection of its own: the run's connection may be inside a step's transaction.
  const statusDocument = async () => ({
    backfills: [...progress.values()],
    rollout: await readStatusFrom(settings.postgresUrl, settings.stateSchema, settings.schema).catch((error: Error) => ({ error: error.message })),
  });
  const http = listen
    ? await startHttpServer(
        listen,
        {
          readiness: async () => ({ ready: true, detail: {} }),
          metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
          status: statusDocument,
          page: async () => {
            const document = await statusDocument();
            return renderStatusPage({ title: `tandem ${command.name()}`, generatedAt: new Date(), refreshSeconds: 2, ...document });
          },
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
      backfillBatchTimeMs: settings.backfillBatchTimeMs,
      throttle,
      stallTimeoutMs: (options.stallTimeout ?? 60) * 1000,
      useVersionSchema: settings.useVersionSchema,
      maxActiveMigrations: options.maxActiveMigrations,
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
