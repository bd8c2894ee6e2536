/**
 * The three forms a user's secret takes in PostgreSQL (pg_authid.rolpassword, pg_shadow.passwd) and
 * so in PgBouncer's auth_file: a plain password, an md5 hash, a SCRAM-SHA-256 verifier. Parsed once,
 * where the text comes in (a file, an auth query), into a value the exchanges can use.
 */

export type Secret =
  | { kind: 'plain'; password: string }
  /** `md5` + md5(password + user name), 32 lowercase hex digits. */
  | { kind: 'md5'; hash: string }
  | ScramSecret;

/** RFC 5803's form, which PostgreSQL stores: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. */
export interface ScramSecret {
  kind: 'scram';
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** SHA-256 keys are 32 bytes; a verifier with other lengths was not written by PostgreSQL. */
export const SCRAM_KEY_LENGTH = 32;

const MD5_SECRET = /^md5[0-9a-f]{32}$/;
const SCRAM_SECRET = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2}):([A-Za-z0-9+/]+={0,2})$/;

/**
 * Reads a stored secret. Like PostgreSQL, text that looks like neither hash is a plain password, but
 * text that claims to be a SCRAM verifier and is malformed is an error rather than a password: a
 * truncated verifier taken for a password would make the login fail with no clue why.
 */
export function parseSecret(text: string): Secret {
  if (MD5_SECRET.test(text)) return { kind: 'md5', hash: text };
  if (!text.startsWith('SCRAM-SHA-256$')) return { kind: 'plain', password: text };
  const match = SCRAM_SECRET.exec(text);
  if (!match) throw new SecretFormatError('a SCRAM-SHA-256 secret must read SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (base64)');
  const iterations = Number(match[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new SecretFormatError('the SCRAM-SHA-256 secret has an invalid iteration count');
  const salt = Buffer.from(match[2]!, 'base64');
  const storedKey = Buffer.from(match[3]!, 'base64');
  const serverKey = Buffer.from(match[4]!, 'base64');
  if (salt.length === 0) throw new SecretFormatError('the SCRAM-SHA-256 secret has an empty salt');
  if (storedKey.length !== SCRAM_KEY_LENGTH || serverKey.length !== SCRAM_KEY_LENGTH) {
    throw new SecretFormatError(`the SCRAM-SHA-256 secret's StoredKey and ServerKey must each be ${SCRAM_KEY_LENGTH} bytes`);
  }
  return { kind: 'scram', iterations, salt, storedKey, serverKey };
}

/** What kind of secret it is, for logs and errors: never the secret itself. */
export function describeSecret(secret: Secret): string {
  switch (secret.kind) {
    case 'plain':
      return 'a plain-text password';
    case 'md5':
      return 'an md5 hash';
    case 'scram':
      return `a SCRAM-SHA-256 verifier (${secret.iterations} iterations)`;
  }
}

/** A secret that could not be read. The message names what is wrong and never quotes the secret. */
export class SecretFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretFormatError';
  }
}

/** The password methods the proxy can ask clients for (its --auth-type, less trust and passthrough). */
export type PasswordAuthType = 'md5' | 'scram-sha-256';

/**
 * Which exchange to run with a client, by PostgreSQL's rules: md5 asked, a SCRAM verifier stored →
 * SCRAM (the stronger method the verifier allows); SCRAM asked, only an md5 hash stored → a SCRAM
 * exchange that cannot succeed ('scram-doomed': run it with mockScramSecret, so it fails at the end
 * like a wrong password). A user with no secret at all gets 'scram-doomed' from the caller too.
 */
export function exchangeFor(authType: PasswordAuthType, secret: Secret): 'md5' | 'scram' | 'scram-doomed' {
  if (secret.kind === 'scram') return 'scram';
  if (authType === 'md5') return 'md5';
  return secret.kind === 'plain' ? 'scram' : 'scram-doomed';
}
