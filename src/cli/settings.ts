import { InvalidArgumentError, Option, type Command } from 'commander';
import { resolvePostgresUrl } from '../db/connection.js';
import { UsageError } from '../errors/index.js';
import { createLogger, parseLogFormat, parseLogLevel, type LogFormat, type Logger } from '../observe/logger.js';
import { parseDuration } from '../proxy/config.js';
import { ENGINE_DEFAULTS } from '../engine/migrator.js';

/** Options every command accepts (DESIGN.md "Command line"). */
export interface CommonSettings {
  /** undefined: fall back to the PG* environment variables, as libpq does. */
  postgresUrl: string | undefined;
  schema: string;
  stateSchema: string;
  lockTimeoutMs: number;
  /** Attempts for each DDL statement that times out waiting for its lock. */
  lockRetries: number;
  backfillBatchSize: number;
  backfillBatchDelayMs: number;
  /** Size batches to take about this long each (backfillBatchSize is then the most a batch takes). */
  backfillBatchTimeMs: number | undefined;
  /** The role migrations run as (SET ROLE), so what they create is owned by it. */
  role: string | undefined;
  /** false: start creates no version schema (pgroll's --use-version-schema=false). */
  useVersionSchema: boolean;
  logger: Logger;
}

export function positiveInteger(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) <= 0) {
      throw new InvalidArgumentError(`${name} must be a positive whole number, got "${value}"`);
    }
    return Number(value);
  };
}

/** A duration flag (500ms, 30s, 2m) in milliseconds. */
export function durationOption(flag: string) {
  return (value: string): number => {
    try {
      return parseDuration(value, flag);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

/** A boolean flag's value as pgroll's (Go's) flags read it: 1, t, true, 0, f, false, in any case. */
export function booleanValue(name: string) {
  return (value: string): boolean => {
    if (/^(1|t|true)$/i.test(value)) return true;
    if (/^(0|f|false)$/i.test(value)) return false;
    throw new InvalidArgumentError(`${name} must be true or false, got "${value}"`);
  };
}

export function nonNegativeInteger(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`${name} must be a whole number, got "${value}"`);
    return Number(value);
  };
}

/**
 * Adds the common options to the root program; subcommands read them with optsWithGlobals().
 * pgroll's environment variables stand in for the flags they mean, so scripts and CI jobs written
 * for pgroll run unchanged (PGROLL_PG_URL is read with DATABASE_URL, in db/connection.ts).
 */
export function addCommonOptions(program: Command): Command {
  return program
    .option('--postgres-url <url>', 'PostgreSQL connection string (else DATABASE_URL, else PGROLL_PG_URL, else the PG* variables)')
    .addOption(new Option('--schema <name>', 'the schema whose tables tandem migrates').default('public').env('PGROLL_SCHEMA'))
    .option('--state-schema <name>', 'where tandem keeps its state', 'tandem')
    // PGROLL_STATE_SCHEMA says where pgroll's state is, so it stands for this flag and not for
    // --state-schema: tandem's tables in pgroll's schema would collide with pgroll's (both have "migrations").
    .addOption(new Option('--pgroll-schema <name>', "pgroll's state schema, read by init --from-pgroll (pgroll's flag)").default('pgroll').env('PGROLL_STATE_SCHEMA'))
    .addOption(
      new Option('--lock-timeout <ms>', 'lock_timeout for every DDL statement, in milliseconds').argParser(positiveInteger('--lock-timeout')).default(500).env('PGROLL_LOCK_TIMEOUT'),
    )
    .addOption(new Option('--role <name>', 'run migrations as this role (SET ROLE), so that it owns what they create').env('PGROLL_ROLE'))
    .option('--lock-retries <n>', 'attempts per DDL statement when its lock does not come in time', positiveInteger('--lock-retries'), 25)
    .option('--backfill-batch-size <rows>', 'rows per backfill batch (with --backfill-batch-time: the most a batch takes)', positiveInteger('--backfill-batch-size'), ENGINE_DEFAULTS.backfillBatchSize)
    .option('--backfill-batch-time <duration>', 'size each backfill batch to take about this long (e.g. 200ms) instead of a fixed row count', durationOption('--backfill-batch-time'))
    .option('--backfill-batch-delay <ms>', 'pause between backfill batches, in milliseconds', nonNegativeInteger('--backfill-batch-delay'), 0)
    .addOption(
      new Option('--use-version-schema [bool]', 'create a version schema for each migration (pgroll\'s flag: --use-version-schema=false creates none)')
        .argParser(booleanValue('--use-version-schema'))
        .preset('true')
        .default(true)
        .env('PGROLL_USE_VERSION_SCHEMA'),
    )
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (else TANDEM_LOG_LEVEL, else info)')
    .option('--verbose', "pgroll's flag: --log-level debug, unless --log-level says otherwise")
    .option('--log-format <format>', 'json, text (one line a step) or pretty; default on a terminal text (proxy and dev: pretty), else json');
}

interface RawCommonOptions {
  postgresUrl?: string;
  schema: string;
  stateSchema: string;
  lockTimeout: number;
  lockRetries: number;
  backfillBatchSize: number;
  backfillBatchDelay: number;
  backfillBatchTime?: number;
  role?: string;
  useVersionSchema: boolean;
  logLevel?: string;
  verbose?: boolean;
  logFormat?: string;
}

/**
 * `connects: false` for commands that never use --postgres-url / DATABASE_URL (tandem dev), so a bad
 * one does not stop them; `logTo` is where log lines go (the command's stderr); `terminalLogFormat`
 * the format on a terminal when --log-format does not say.
 */
export function commonSettings(
  command: Command,
  options: { connects?: boolean; logTo?: NodeJS.WritableStream; terminalLogFormat?: LogFormat } = {},
): CommonSettings {
  const raw = command.optsWithGlobals<RawCommonOptions>();
  let level;
  let format;
  try {
    level = parseLogLevel(raw.logLevel ?? (raw.verbose ? 'debug' : undefined));
    format = parseLogFormat(raw.logFormat);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  for (const [flag, value] of [['--schema', raw.schema], ['--state-schema', raw.stateSchema]] as const) {
    if (!value) throw new UsageError(`${flag} must not be empty`);
  }
  return {
    postgresUrl: options.connects === false ? undefined : resolvePostgresUrl(raw.postgresUrl),
    schema: raw.schema,
    stateSchema: raw.stateSchema,
    lockTimeoutMs: raw.lockTimeout,
    lockRetries: raw.lockRetries,
    backfillBatchSize: raw.backfillBatchSize,
    backfillBatchDelayMs: raw.backfillBatchDelay,
    backfillBatchTimeMs: raw.backfillBatchTime,
    role: raw.role || undefined,
    useVersionSchema: raw.useVersionSchema,
    logger: createLogger({ level, format, terminalFormat: options.terminalLogFormat, destination: options.logTo }),
  };
}
