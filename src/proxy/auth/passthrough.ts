/**
 * `--auth-type passthrough`: the server stays the only judge of passwords and the user configures
 * none. A pooler cannot learn from a relayed SCRAM or md5 exchange anything it can log in with later,
 * so the proxy asks the client for its password in clear text, lets the server decide, and keeps the
 * passwords the server accepted (in memory only) to open more pooled connections as their users.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ErrorFields } from '../protocol/messages.js';

type Kept =
  | { kind: 'password'; password: string; digest: Buffer }
  /** The server refused the kept password when the pool used it; pooled opens fail with its words until a new login. */
  | { kind: 'refused'; error: ErrorFields };

export class KeptPasswords {
  /** Per process: the digests mean nothing outside it, and a kept password is compared without timing leaks. */
  private readonly key = randomBytes(32);
  private readonly byUser = new Map<string, Kept>();
  /** When each user with a kept password was last seen with a client connected. */
  private readonly seenAt = new Map<string, number>();

  /**
   * Forgets the password of every user who has had no client connected (`present`: the users who
   * have one now) for `afterMs`: a password stays in memory only while its user uses the proxy. Their
   * pooled connections stay open until they idle out; the user's next login goes to the server again.
   * Returns the users forgotten.
   */
  forgetAbsent(present: ReadonlySet<string>, afterMs: number, now = Date.now()): string[] {
    const forgotten: string[] = [];
    for (const user of this.byUser.keys()) {
      if (present.has(user) || !this.seenAt.has(user)) this.seenAt.set(user, now);
      else if (now - this.seenAt.get(user)! >= afterMs) forgotten.push(user);
    }
    for (const user of forgotten) {
      this.byUser.delete(user);
      this.seenAt.delete(user);
    }
    return forgotten;
  }

  /** Whether `password` is the one the server last accepted for `user` (no server round trip needed). */
  matches(user: string, password: string): boolean {
    const kept = this.byUser.get(user);
    return kept?.kind === 'password' && timingSafeEqual(kept.digest, this.digest(password));
  }

  keep(user: string, password: string, now = Date.now()): void {
    this.byUser.set(user, { kind: 'password', password, digest: this.digest(password) });
    this.seenAt.set(user, now);
  }

  /** The password to open a pooled connection with, or the server's last refusal of it. */
  passwordOf(user: string): { password: string } | { refused: ErrorFields } | undefined {
    const kept = this.byUser.get(user);
    if (!kept) return undefined;
    return kept.kind === 'password' ? { password: kept.password } : { refused: kept.error };
  }

  /**
   * Forgets `password` after the server refused it (changed, expired); false when a newer login has
   * already replaced it, which then stays.
   */
  drop(user: string, password: string, error: ErrorFields): boolean {
    const kept = this.byUser.get(user);
    if (kept?.kind !== 'password' || kept.password !== password) return false;
    this.byUser.set(user, { kind: 'refused', error });
    return true;
  }

  private digest(password: string): Buffer {
    return createHmac('sha256', this.key).update(password, 'utf8').digest();
  }
}

/** The server refused to log the pool in with a kept password: the waiting client gets the server's words. */
export class KeptPasswordRefusedError extends Error {
  constructor(readonly error: ErrorFields) {
    super(error.message);
    this.name = 'KeptPasswordRefusedError';
  }
}

/**
 * Why a password may not be asked for in clear text on this connection, or undefined when it may:
 * over TLS, from loopback, or through a Unix socket (no remote address) nobody can sniff.
 */
export function cleartextRefusal(remoteAddress: string | undefined, encrypted: boolean): ErrorFields | undefined {
  if (encrypted || isLocal(remoteAddress)) return undefined;
  return {
    severity: 'FATAL',
    code: '28000',
    message: '--auth-type passthrough asks for the password in clear text, which this connection does not protect: it uses no TLS and does not come from this machine',
    hint: 'Connect with TLS (sslmode=require; the proxy needs --tls-cert and --tls-key), or run the proxy with another --auth-type (md5 or scram-sha-256, with --auth-file or --auth-query).',
  };
}

function isLocal(address: string | undefined): boolean {
  if (address === undefined) return true;
  const v4 = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
  return v4.startsWith('127.') || address === '::1';
}
