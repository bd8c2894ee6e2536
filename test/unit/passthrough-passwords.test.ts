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

  it('forgets the password of a user who has had no client for the given time, and only then', () => {
    const kept = new KeptPasswords();
    kept.keep('alice', 'a', 0);
    kept.keep('bob', 'b', 0);
    // bob still has a client at 50 s; alice left.
    expect(kept.forgetAbsent(new Set(['bob']), 60_000, 50_000)).toEqual([]);
    expect(kept.forgetAbsent(new Set(), 60_000, 59_999)).toEqual([]);
    expect(kept.forgetAbsent(new Set(), 60_000, 60_000)).toEqual(['alice']);
    expect(kept.passwordOf('alice')).toBeUndefined();
    expect(kept.matches('alice', 'a')).toBe(false);
    // bob was seen at 50 s: he goes a minute after that.
    expect(kept.passwordOf('bob')).toEqual({ password: 'b' });
    expect(kept.forgetAbsent(new Set(), 60_000, 110_000)).toEqual(['bob']);
    // A refused password goes the same way, so the user's next login is tried again.
    kept.keep('carol', 'c', 200_000);
    kept.drop('carol', 'c', refused);
    expect(kept.forgetAbsent(new Set(), 60_000, 260_000)).toEqual(['carol']);
    expect(kept.passwordOf('carol')).toBeUndefined();
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
