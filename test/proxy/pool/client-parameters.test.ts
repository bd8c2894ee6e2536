/** A pooled client's welcome and values, from its pool's ParameterStatus frames and what it asked for at login. */
import { describe, expect, it } from 'vitest';
import { STANDARD, TrackedParameters, readExtraParameters, type ParameterValues } from '../../../src/proxy/pool/client-parameters.js';
import { MessageType, encodeMessage } from '../../../src/proxy/protocol/messages.js';

const status = (name: string, value: string) => encodeMessage(MessageType.ParameterStatus, Buffer.from(`${name}\0${value}\0`, 'utf8'));

/** A pool's welcome as PostgreSQL sends it: reported and unreported-by-us parameters mixed. */
const poolFrames = () => [
  status('application_name', ''),
  status('client_encoding', 'UTF8'),
  status('DateStyle', 'ISO, MDY'),
  status('server_version', '17.2'),
  status('TimeZone', 'UTC'),
];

describe('a pooled client\'s welcome', () => {
  const cases: Array<[what: string, asked: ParameterValues, expected: Buffer[]]> = [
    ['the pool\'s frames for a client that asked for nothing', new Map(), poolFrames()],
    ['its own values in place of the pool\'s', new Map([['application_name', 'billing'], ['TimeZone', 'Europe/Paris']]), [
      status('application_name', 'billing'), status('client_encoding', 'UTF8'), status('DateStyle', 'ISO, MDY'), status('server_version', '17.2'), status('TimeZone', 'Europe/Paris'),
    ]],
    ['the pool\'s frame where it asked for the pool\'s value', new Map([['DateStyle', 'ISO, MDY']]), poolFrames()],
    ['no frame for an unreported parameter it asked for', new Map([['extra_float_digits', '3']]), poolFrames()],
  ];
  for (const [what, asked, expected] of cases) {
    it(what, () => {
      const frames = poolFrames();
      const values = STANDARD.clientValues(asked, frames);
      expect(STANDARD.welcomeFrames(frames, values)).toEqual(Buffer.concat(expected));
      // Read once per pool: the second client of the pool is welcomed alike.
      expect(STANDARD.welcomeFrames(frames, STANDARD.clientValues(asked, frames))).toEqual(Buffer.concat(expected));
    });
  }

  it('each client of a pool with its own application_name, one after another', () => {
    const frames = poolFrames();
    for (const name of ['billing', 'billing', 'reports', 'billing', '']) {
      const expected = [status('application_name', name), ...poolFrames().slice(1)];
      expect(STANDARD.welcomeFrames(frames, STANDARD.clientValues(new Map([['application_name', name]]), frames))).toEqual(Buffer.concat(expected));
    }
  });

  it('values: the pool\'s reported ones in the welcome\'s order, the unreported at their defaults, the asked ones over them', () => {
    const frames = poolFrames();
    const values = STANDARD.clientValues(new Map([['TimeZone', 'Asia/Tokyo'], ['extra_float_digits', '3']]), frames);
    expect([...values]).toEqual([
      ['application_name', ''], ['client_encoding', 'UTF8'], ['DateStyle', 'ISO, MDY'], ['TimeZone', 'Asia/Tokyo'], ['extra_float_digits', '3'],
    ]);
    // Each client has its own values: what one sets later is not the next one's.
    values.set('DateStyle', 'German');
    expect(STANDARD.clientValues(new Map(), frames).get('DateStyle')).toBe('ISO, MDY');
  });
});

describe('--track-extra-parameters', () => {
  it('reads names case-insensitively, drops the standard ones and repeats, and refuses what cannot be carried', () => {
    expect(readExtraParameters([' Statement_Timeout', 'client_min_messages', 'statement_timeout', 'TimeZone', 'extra_float_digits', '', 'myext.mode'])).toEqual([
      'statement_timeout', 'client_min_messages', 'myext.mode',
    ]);
    expect(() => readExtraParameters(['search_path'])).toThrow(/search_path cannot be tracked: a pool serves one version/);
    expect(() => readExtraParameters(['user'])).toThrow('"user" is a startup parameter of the protocol, not a setting a pooled client can carry');
    expect(() => readExtraParameters(['work_mem; DROP TABLE x'])).toThrow('"work_mem; DROP TABLE x" is not a setting name');
  });

  it('takes the extra ones at login as it takes extra_float_digits, and names them when it refuses another', () => {
    const tracked = new TrackedParameters(['statement_timeout', 'default_transaction_read_only']);
    const asked = tracked.readStartupParameters([['user', 'u'], ['database', 'd'], ['Statement_Timeout', '5s'], ['options', '-c default_transaction_read_only=on']], new Set());
    expect(asked).toEqual({ ok: true, values: new Map([['default_transaction_read_only', 'on'], ['statement_timeout', '5s']]) });
    const refused = STANDARD.readStartupParameters([['statement_timeout', '5s']], new Set());
    expect(refused).toMatchObject({ ok: false, error: { code: '08P01', message: 'unsupported startup parameter: statement_timeout' } });
    expect(refused.ok ? '' : refused.error.hint).toContain('--track-extra-parameters statement_timeout');
    const other = tracked.readStartupParameters([['work_mem', '1MB']], new Set());
    expect(other.ok ? '' : other.error.detail).toContain('statement_timeout, default_transaction_read_only');
  });

  it('welcomes a client with its own value of an extra parameter the server reports, and at the default otherwise', () => {
    const tracked = new TrackedParameters(['default_transaction_read_only', 'statement_timeout']);
    const frames = [...poolFrames(), status('default_transaction_read_only', 'off')];
    const values = tracked.clientValues(new Map([['default_transaction_read_only', 'on'], ['statement_timeout', '5s']]), frames);
    expect(values.get('statement_timeout')).toBe('5s');
    expect(tracked.welcomeFrames(frames, values)).toEqual(Buffer.concat([...poolFrames(), status('default_transaction_read_only', 'on')]));
    expect(tracked.clientValues(new Map(), frames).get('statement_timeout')).toBeNull();
    // Without the flag the server's report is the pool's, whatever a client asked.
    expect(STANDARD.welcomeFrames(frames, STANDARD.clientValues(new Map(), frames))).toEqual(Buffer.concat(frames));
  });
});
