/** A pooled client's welcome and values, from its pool's ParameterStatus frames and what it asked for at login. */
import { describe, expect, it } from 'vitest';
import { clientValues, welcomeFrames, type ParameterValues } from '../../../src/proxy/pool/client-parameters.js';
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
      const values = clientValues(asked, frames);
      expect(welcomeFrames(frames, values)).toEqual(Buffer.concat(expected));
      // Read once per pool: the second client of the pool is welcomed alike.
      expect(welcomeFrames(frames, clientValues(asked, frames))).toEqual(Buffer.concat(expected));
    });
  }

  it('each client of a pool with its own application_name, one after another', () => {
    const frames = poolFrames();
    for (const name of ['billing', 'billing', 'reports', 'billing', '']) {
      const expected = [status('application_name', name), ...poolFrames().slice(1)];
      expect(welcomeFrames(frames, clientValues(new Map([['application_name', name]]), frames))).toEqual(Buffer.concat(expected));
    }
  });

  it('values: the pool\'s reported ones in the welcome\'s order, the unreported at their defaults, the asked ones over them', () => {
    const frames = poolFrames();
    const values = clientValues(new Map([['TimeZone', 'Asia/Tokyo'], ['extra_float_digits', '3']]), frames);
    expect([...values]).toEqual([
      ['application_name', ''], ['client_encoding', 'UTF8'], ['DateStyle', 'ISO, MDY'], ['TimeZone', 'Asia/Tokyo'], ['extra_float_digits', '3'],
    ]);
    // Each client has its own values: what one sets later is not the next one's.
    values.set('DateStyle', 'German');
    expect(clientValues(new Map(), frames).get('DateStyle')).toBe('ISO, MDY');
  });
});
