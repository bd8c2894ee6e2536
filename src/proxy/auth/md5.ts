/**
 * PostgreSQL's md5 password method, both ways. The stored hash is `md5` + md5(password + user); on
 * the wire the client answers a 4-byte salt with `md5` + md5(hex of the stored hash's digits + salt).
 * So the stored hash alone is enough to log in (PgBouncer relies on that for md5 secrets), and a
 * plain password works too: the hash is computed from it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Secret } from './secret.js';

const md5Hex = (data: string | Buffer): string => createHash('md5').update(data).digest('hex');

/** What PostgreSQL stores for `password` with password_encryption = md5. */
export function md5Hash(user: string, password: string): string {
  return `md5${md5Hex(password + user)}`;
}

/** The salt of an AuthenticationMD5Password request, fresh for every login. */
export function md5Salt(): Buffer {
  return randomBytes(4);
}

/** The stored-form hash a secret gives for md5, or undefined for a SCRAM verifier (md5 cannot use it). */
function storedHash(user: string, secret: Secret): string | undefined {
  if (secret.kind === 'md5') return secret.hash;
  if (secret.kind === 'plain') return md5Hash(user, secret.password);
  return undefined;
}

/** The client's answer to the salt, from a plain password or a stored md5 hash. */
export function md5Response(user: string, secret: Secret, salt: Buffer): string {
  const hash = storedHash(user, secret);
  if (!hash) throw new Error('md5 authentication needs a plain password or an md5 hash, not a SCRAM verifier');
  return `md5${md5Hex(Buffer.concat([Buffer.from(hash.slice(3), 'utf8'), salt]))}`;
}

/**
 * Whether a client's answer matches the secret. A SCRAM verifier never matches: PostgreSQL, asked for
 * md5 with a SCRAM verifier stored, runs SCRAM instead (see exchangeFor in secret.ts).
 */
export function verifyMd5Response(user: string, secret: Secret, salt: Buffer, response: string): boolean {
  if (!storedHash(user, secret)) return false;
  const expected = Buffer.from(md5Response(user, secret, salt), 'utf8');
  const given = Buffer.from(response, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
