import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, parseLogFormat, textLine } from '../../src/observe/logger.js';

function capture(isTTY: boolean): { stream: PassThrough & { isTTY: boolean }; text: () => string } {
  const stream = Object.assign(new PassThrough(), { isTTY });
  let written = '';
  stream.on('data', (chunk: Buffer) => (written += chunk.toString()));
  return { stream, text: () => written };
}

describe('text log lines', () => {
  it('renders a finished step as one line with its time', () => {
    expect(textLine({ level: 30, msg: 'add NOT NULL check on users.email NOT VALID', phase: 'start', step: 3, of: 5, ms: 2 })).toBe(
      '✓ 3/5 add NOT NULL check on users.email NOT VALID  2 ms',
    );
    expect(textLine({ level: 30, msg: 'backfill users', step: 1, of: 2, ms: 1500 })).toBe('✓ 1/2 backfill users  1.5 s');
    expect(textLine({ level: 30, msg: 'backfill users', step: 1, of: 2, ms: 125_000 })).toBe('✓ 1/2 backfill users  2m05s');
  });

  it('marks warnings and errors, with their cause, and colours them only when asked', () => {
    expect(textLine({ level: 40, msg: 'lock not available; retrying' })).toBe('! lock not available; retrying');
    expect(textLine({ level: 50, msg: 'start of 02_x failed; rolling back what it did', error: 'column "x" does not exist' })).toBe(
      '✗ start of 02_x failed; rolling back what it did: column "x" does not exist',
    );
    expect(textLine({ level: 40, msg: 'slow' }, true)).toBe('\x1b[33m! slow\x1b[0m');
    expect(textLine({ level: 30, msg: 'starting 02_x', migration: '02_x', steps: 4 })).toBe('starting 02_x');
  });

  it('is the default on a terminal, clearing the progress bar line first; JSON is the default elsewhere', () => {
    const terminal = capture(true);
    createLogger({ destination: terminal.stream, level: 'info' }).info({ step: 1, of: 1, ms: 0 }, 'create table users');
    expect(terminal.text()).toBe('\r\x1b[2K\x1b[32m✓\x1b[0m 1/1 create table users  \x1b[2m0 ms\x1b[0m\n');

    const pipe = capture(false);
    createLogger({ destination: pipe.stream, level: 'info' }).info({ step: 1, of: 1, ms: 0 }, 'create table users');
    expect(JSON.parse(pipe.text())).toMatchObject({ level: 30, msg: 'create table users', step: 1, of: 1, ms: 0 });

    const proxy = capture(true);
    createLogger({ destination: proxy.stream, level: 'info', terminalFormat: 'pretty' }).info({ version: 'public_02_x' }, 'client connected');
    expect(proxy.text()).toMatch(/client connected.*\n.*version.*public_02_x/s);

    const chosen = capture(false);
    createLogger({ destination: chosen.stream, level: 'info', format: 'text' }).warn('careful');
    expect(chosen.text()).toBe('! careful\n');
  });

  it('accepts json, text and pretty', () => {
    expect(parseLogFormat('TEXT')).toBe('text');
    expect(parseLogFormat(undefined)).toBeUndefined();
    expect(() => parseLogFormat('xml')).toThrow('unknown log format "xml" (expected one of json, text, pretty)');
  });
});
