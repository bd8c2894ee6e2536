/** Passthrough's pure parts: the kept passwords and where a clear-text password may be asked for. */
import { describe, expect, it } from 'vitest';
import { KeptPasswords, cleartextRefusal } from '../../src/proxy/auth/passthrough.js';

const refused = { severity: 'FATAL' as const, code: '28P01', message: 'password authentication failed for user "alice"' };

describe('KeptPasswords', () => {
  it('matches only the kept password of the user, replaces it, and drops only the refused one', () => {
    const kept = new KeptPasswords();
    expect(kept.matches('alice', 'one')).toBe(false);
    kept.keep('alice', 'one');
    expect(kept.matches('alice', 'one')).toBe(true);
    expect(kept.matches('alice', 'One')).toBe(false);
    expect(kept.matches('bob', 'one')).toBe(false);
    expect(kept.passwordOf('alice')).toEqual({ password: 'one' });

    // A newer login replaced it: the refusal of the old one changes nothing.
    kept.keep('alice', 'two');
    expect(kept.drop('alice', 'one', refused)).toBe(false);
    expect(kept.passwordOf('alice')).toEqual({ password: 'two' });

    expect(kept.drop('alice', 'two', refused)).toBe(true);
    expect(kept.matches('alice', 'two')).toBe(false);
    expect(kept.passwordOf('alice')).toEqual({ refused });
    kept.keep('alice', 'three');
    expect(kept.passwordOf('alice')).toEqual({ password: 'three' });
  });
});

describe('cleartextRefusal', () => {
  it.each([
    ['127.0.0.1', false],
    ['127.1.2.3', false],
    ['::1', false],
    ['::ffff:127.0.0.1', false],
    [undefined, false],
    ['192.0.2.2', true],
    ['::ffff:10.0.0.1', true],
    ['fd00::2', true],
  ] as const)('from %s without TLS: refused %s', (address, refusedHere) => {
    const refusal = cleartextRefusal(address, false);
    if (refusedHere) expect(refusal).toMatchObject({ code: '28000', hint: expect.stringContaining('TLS') });
    else expect(refusal).toBeUndefined();
    expect(cleartextRefusal(address, true)).toBeUndefined();
  });
});
