import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Human-readable lines instead of JSON; defaults to "stderr is a terminal". */
  pretty?: boolean;
  /** Where lines go; stderr by default so that stdout stays clean for command output. */
  destination?: NodeJS.WritableStream;
}

const LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function parseLogLevel(value: string | undefined): LevelWithSilent | undefined {
  if (value === undefined || value === '') return undefined;
  const level = value.toLowerCase();
  if (!LEVELS.includes(level)) {
    throw new Error(`unknown log level "${value}" (expected one of ${LEVELS.join(', ')})`);
  }
  return level as LevelWithSilent;
}

/**
 * The one logger factory. JSON lines for machines, pino-pretty for people at a terminal;
 * secrets never reach it because connection strings are logged through `redactUrl`.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? process.stderr;
  const level = options.level ?? parseLogLevel(process.env.TANDEM_LOG_LEVEL) ?? 'info';
  const usePretty = options.pretty ?? Boolean((destination as { isTTY?: boolean }).isTTY);
  const base = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) {
    return pino(base, pretty({ destination, sync: true, colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' }));
  }
  return pino(base, destination);
}

/** A logger that drops everything, for library callers and tests that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** A connection string with its password masked, fit for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '*****';
    return parsed.toString();
  } catch {
    return url.replace(/:\/\/([^:/@]+):[^@]*@/, '://$1:*****@');
  }
}
