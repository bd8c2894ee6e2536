import { describe, expect, it } from 'vitest';
import { parseUserlist, UserlistError } from '../../src/proxy/auth/userlist.js';

const SCRAM = 'SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$' + Buffer.alloc(32, 1).toString('base64') + ':' + Buffer.alloc(32, 2).toString('base64');

describe('auth_file (PgBouncer userlist.txt)', () => {
  it('reads the three kinds of secret, doubled quotes, comments and blank lines, and ignores the rest of a line', () => {
    const users = parseUserlist(
      [
        '; PgBouncer-style comment',
        '# and this one',
        '',
        '   "alice" "correct horse"',
        '"bob"\t"md545f2603610af569b6155c45067268c6b" extra fields are ignored',
        `"carol" "${SCRAM}"`,
        '"say ""hi""" "pass ""word"""',
        '"empty" ""',
        '"alice" "later wins"',
      ].join('\n'),
      'userlist.txt',
    );
    expect([...users.keys()]).toEqual(['alice', 'bob', 'carol', 'say "hi"', 'empty']);
    expect(users.get('alice')).toEqual({ kind: 'plain', password: 'later wins' });
    expect(users.get('bob')).toEqual({ kind: 'md5', hash: 'md545f2603610af569b6155c45067268c6b' });
    expect(users.get('carol')).toMatchObject({ kind: 'scram', iterations: 4096, salt: Buffer.from('saltsaltsaltsalt'), storedKey: Buffer.alloc(32, 1), serverKey: Buffer.alloc(32, 2) });
    expect(users.get('say "hi"')).toEqual({ kind: 'plain', password: 'pass "word"' });
    expect(users.get('empty')).toEqual({ kind: 'plain', password: '' });
  });

  it('names the file and line of a malformed entry and never quotes a secret', () => {
    const cases: Array<[line: string, reason: RegExp]> = [
      ['alice "secret1"', /expected the user name in double quotes/],
      ['"alice', /user name has no closing double quote/],
      ['"alice"', /only one field: expected "user" "secret"/],
      ['"alice" secret1', /expected the secret of user "alice" in double quotes/],
      ['"alice" "secret1', /secret of user "alice" has no closing double quote/],
      ['"" "secret1"', /user name is empty/],
      ['"alice""secret1"', /only one field/],
      ['"alice" "SCRAM-SHA-256$4096:c2FsdA==$secret1"', /user "alice": a SCRAM-SHA-256 secret must read/],
      ['"alice" "SCRAM-SHA-256$4096:c2FsdA==$c2VjcmV0MQ==:c2VjcmV0MQ=="', /StoredKey and ServerKey must each be 32 bytes/],
    ];
    for (const [line, reason] of cases) {
      const error = (() => {
        try {
          parseUserlist(`; header\n"ok" "fine"\n${line}\n`, '/etc/tandem/userlist.txt');
        } catch (caught) {
          return caught;
        }
      })();
      expect(error, line).toBeInstanceOf(UserlistError);
      expect(error, line).toMatchObject({ file: '/etc/tandem/userlist.txt', line: 3 });
      expect((error as Error).message, line).toMatch(/^\/etc\/tandem\/userlist\.txt:3: /);
      expect((error as Error).message, line).toMatch(reason);
      expect((error as Error).message, line).not.toContain('secret1');
      expect((error as Error).message, line).not.toContain('c2VjcmV0MQ');
    }
  });
});
