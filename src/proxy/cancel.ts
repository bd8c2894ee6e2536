/**
 * Cancel requests. Clients see the server's own BackendKeyData, so a CancelRequest that reaches the
 * proxy carries a key the server knows; the proxy passes on only keys of sessions it holds, which
 * keeps it from relaying guesses at other backends.
 */
import { randomBytes } from 'node:crypto';
import { ChurnMap } from './churn.js';
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

/** A registered key, with the others that end in the same four bytes (rare: they are random). */
interface KeyHolder {
  readonly key: Buffer;
  readonly owner: object;
  readonly upstreamKey: (() => Buffer | undefined) | undefined;
  readonly next: KeyHolder | undefined;
}

/**
 * The number a key is filed under: its last four bytes, random in the proxy's keys and in the
 * server's secret alike, and an array index (no string made per key, see churn.ts).
 */
function tailOf(key: Buffer): number {
  return key.length >= 4 ? key.readUInt32BE(key.length - 4) : 0;
}

/** The chain without `key`'s holder (a new holder is made for those before it: holders never change). */
function without(chain: KeyHolder | undefined, key: Buffer): KeyHolder | undefined {
  if (!chain) return undefined;
  if (chain.key.equals(key)) return chain.next;
  const rest = without(chain.next, key);
  return rest === chain.next ? chain : { ...chain, next: rest };
}

export class CancelRegistry {
  /** By the key the client was given: its session, and (pooled) where that key's cancel goes now. */
  private readonly holders = new ChurnMap<number, KeyHolder>();
  private count = 0;

  constructor(
    private readonly target: UpstreamTarget,
    private readonly logger: Logger,
  ) {}

  /**
   * `upstreamKey`: for a pooled session, whose key is the proxy's own, the key of the server
   * connection it holds right now (undefined while it holds none: nothing runs to cancel).
   * A key registered before (the server reuses process ids) now names `owner`.
   */
  add(key: Buffer, owner: object, upstreamKey?: () => Buffer | undefined): void {
    const tail = tailOf(key);
    const chain = this.holders.get(tail);
    const rest = without(chain, key);
    if (rest === chain) this.count++;
    this.holders.set(tail, { key, owner, upstreamKey, next: rest });
  }

  /** Forgets a key, unless another session has taken it since. */
  remove(key: Buffer, owner: object): void {
    const tail = tailOf(key);
    const chain = this.holders.get(tail);
    if (this.find(chain, key)?.owner !== owner) return;
    const rest = without(chain, key);
    if (rest) this.holders.set(tail, rest);
    else this.holders.delete(tail);
    this.count--;
  }

  get size(): number {
    return this.count;
  }

  /**
   * Relays a CancelRequest if its key belongs to a live session; unknown keys are dropped, as the
   * server would. Resolves once the server has closed the forwarded request (it has acted on it).
   */
  async cancel(key: Buffer, from: string): Promise<void> {
    const entry = this.find(this.holders.get(tailOf(key)), key);
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

  private find(chain: KeyHolder | undefined, key: Buffer): KeyHolder | undefined {
    for (let holder = chain; holder; holder = holder.next) if (holder.key.equals(key)) return holder;
    return undefined;
  }
}
