/**
 * Cancel requests. Clients see the server's own BackendKeyData, so a CancelRequest that reaches the
 * proxy carries a key the server knows; the proxy passes on only keys of sessions it holds, which
 * keeps it from relaying guesses at other backends.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../observe/logger.js';
import { sendCancel, type UpstreamTarget } from './upstream.js';

const CANCEL_KEY_LENGTH = 8;
/** Keys drawn per call into the random generator: one call per login cost more than the rest of its welcome. */
const KEYS_PER_DRAW = 512;
let randomStock = Buffer.alloc(0);
let stockUsed = 0;

/**
 * A cancel key of the proxy's own (pooled sessions, the admin console). Each is fresh random bytes
 * never handed out before; a new stock replaces the old one, so keys still in use are left as they are.
 */
export function newCancelKey(): Buffer {
  if (stockUsed === randomStock.length) {
    randomStock = randomBytes(KEYS_PER_DRAW * CANCEL_KEY_LENGTH);
    stockUsed = 0;
  }
  const key = randomStock.subarray(stockUsed, stockUsed + CANCEL_KEY_LENGTH);
  stockUsed += CANCEL_KEY_LENGTH;
  return key;
}

export class CancelRegistry {
  /** By the key the client was given: its session, and (pooled) where that key's cancel goes now. */
  private readonly sessions = new Map<string, { owner: object; upstreamKey: (() => Buffer | undefined) | undefined }>();

  constructor(
    private readonly target: UpstreamTarget,
    private readonly logger: Logger,
  ) {}

  /**
   * `upstreamKey`: for a pooled session, whose key is the proxy's own, the key of the server
   * connection it holds right now (undefined while it holds none: nothing runs to cancel).
   */
  add(key: Buffer, owner: object, upstreamKey?: () => Buffer | undefined): void {
    this.sessions.set(key.toString('hex'), { owner, upstreamKey });
  }

  /** Forgets a key, unless another session has taken it since (the server reuses process ids). */
  remove(key: Buffer, owner: object): void {
    const hex = key.toString('hex');
    if (this.sessions.get(hex)?.owner === owner) this.sessions.delete(hex);
  }

  get size(): number {
    return this.sessions.size;
  }

  /**
   * Relays a CancelRequest if its key belongs to a live session; unknown keys are dropped, as the
   * server would. Resolves once the server has closed the forwarded request (it has acted on it).
   */
  async cancel(key: Buffer, from: string): Promise<void> {
    const entry = this.sessions.get(key.toString('hex'));
    if (!entry) {
      this.logger.info({ client: from }, 'cancel request with an unknown key ignored');
      return;
    }
    const upstream = entry.upstreamKey ? entry.upstreamKey() : key;
    if (!upstream) return;
    await sendCancel(this.target, upstream).catch((error: Error) =>
      this.logger.warn({ client: from, err: error.message }, 'could not pass a cancel request to the server'),
    );
  }
}
