import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';
import { duration } from './progress.js';

export type { Logger };

/**
 * json: one JSON object a line, for log collectors; text: one short line a record, for a person
 * at a terminal (steps with their time, warnings in colour); pretty: pino-pretty's field blocks.
 */
export const LOG_FORMATS = ['json', 'text', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Defaults to `terminalFormat` when the destination is a terminal, else json. */
  format?: LogFormat;
  /** text (the default) for commands that report steps; pretty where every line's fields matter (the proxy's connection lines). */
  terminalFormat?: LogFormat;
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

export function parseLogFormat(value: string | undefined): LogFormat | undefined {
  if (value === undefined || value === '') return undefined;
  const format = value.toLowerCase();
  if (!(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new Error(`unknown log format "${value}" (expected one of ${LOG_FORMATS.join(', ')})`);
  }
  return format as LogFormat;
}

/**
 * The one logger factory. JSON lines for machines, one-line text for people at a terminal;
 * secrets never reach it because connection strings are logged through `redactUrl`.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? process.stderr;
  const level = options.level ?? parseLogLevel(process.env.TANDEM_LOG_LEVEL) ?? 'info';
  const terminal = Boolean((destination as { isTTY?: boolean }).isTTY);
  const format = options.format ?? (terminal ? (options.terminalFormat ?? 'text') : 'json');
  const base = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'pretty') {
    return pino(base, pretty({ destination, sync: true, colorize: terminal, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' }));
  }
  if (format === 'text') return pino(base, textDestination(destination, terminal));
  return pino(base, destination);
}

/**
 * Turns each JSON record pino writes into one line for a person. On a terminal the line first
 * clears whatever the backfill progress bar drew there, so a log line never lands inside the bar.
 */
function textDestination(stream: NodeJS.WritableStream, terminal: boolean): { write(chunk: string): void } {
  return {
    write(chunk) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(chunk) as Record<string, unknown>;
      } catch {
        stream.write(chunk);
        return;
      }
      stream.write(`${terminal ? '\r\x1b[2K' : ''}${textLine(record, terminal)}\n`);
    },
  };
}

const COLOURS = { red: '\x1b[31m', yellow: '\x1b[33m', green: '\x1b[32m', dim: '\x1b[2m' } as const;

/** One log record as a line: a finished step as `✓ 3/5 description  2 ms`, problems marked and coloured. */
export function textLine(record: Record<string, unknown>, colour = false): string {
  const paint = (name: keyof typeof COLOURS, text: string) => (colour ? `${COLOURS[name]}${text}\x1b[0m` : text);
  const level = typeof record.level === 'number' ? record.level : 30;
  const message = typeof record.msg === 'string' ? record.msg : '';
  const cause = typeof record.error === 'string' ? record.error : typeof record.err === 'string' ? record.err : undefined;
  if (level >= 50) return paint('red', `✗ ${message}${cause ? `: ${cause}` : ''}`);
  if (level >= 40) return paint('yellow', `! ${message}${cause ? `: ${cause}` : ''}`);
  if (level < 30) return paint('dim', message);
  const { step, of, ms } = record;
  if (typeof step === 'number' && typeof of === 'number' && typeof ms === 'number') {
    return `${paint('green', '✓')} ${step}/${of} ${message}  ${paint('dim', elapsed(ms))}`;
  }
  return message;
}

function elapsed(ms: number): string {
  return ms < 1000 ? `${ms} ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : duration(ms / 1000);
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
