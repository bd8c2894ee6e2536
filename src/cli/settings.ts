import { InvalidArgumentError, Option, type Command } from 'commander';
import { resolvePostgresUrl } from '../db/connection.js';
import { UsageError } from '../errors/index.js';
import { createLogger, parseLogLevel, type Logger } from '../observe/logger.js';

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
  /** The role migrations run as (SET ROLE), so what they create is owned by it. */
  role: string | undefined;
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
    .addOption(
      new Option('--lock-timeout <ms>', 'lock_timeout for every DDL statement, in milliseconds').argParser(positiveInteger('--lock-timeout')).default(500).env('PGROLL_LOCK_TIMEOUT'),
    )
    .addOption(new Option('--role <name>', 'run migrations as this role (SET ROLE), so that it owns what they create').env('PGROLL_ROLE'))
    .option('--lock-retries <n>', 'attempts per DDL statement when its lock does not come in time', positiveInteger('--lock-retries'), 25)
    .option('--backfill-batch-size <rows>', 'rows per backfill batch', positiveInteger('--backfill-batch-size'), 1000)
    .option('--backfill-batch-delay <ms>', 'pause between backfill batches, in milliseconds', nonNegativeInteger('--backfill-batch-delay'), 0)
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (else TANDEM_LOG_LEVEL, else info)');
}

interface RawCommonOptions {
  postgresUrl?: string;
  schema: string;
  stateSchema: string;
  lockTimeout: number;
  lockRetries: number;
  backfillBatchSize: number;
  backfillBatchDelay: number;
  role?: string;
  logLevel?: string;
}

/** `connects: false` for commands that never use --postgres-url / DATABASE_URL (tandem dev), so a bad one does not stop them. */
export function commonSettings(command: Command, options: { connects?: boolean } = {}): CommonSettings {
  const raw = command.optsWithGlobals<RawCommonOptions>();
  let level;
  try {
    level = parseLogLevel(raw.logLevel);
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
    role: raw.role || undefined,
    logger: createLogger({ level }),
  };
}
