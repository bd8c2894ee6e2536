/**
 * Cancel requests. Clients see the server's own BackendKeyData, so a CancelRequest that reaches the
 * proxy carries a key the server knows; the proxy passes on only keys of sessions it holds, which
 * keeps it from relaying guesses at other backends.
 */
import type { Logger } from '../observe/logger.js';
import { sendCancel, type UpstreamTarget } from './upstream.js';

export class CancelRegistry {
  private readonly sessions = new Map<string, object>();

  constructor(
    private readonly target: UpstreamTarget,
    private readonly logger: Logger,
  ) {}

  add(key: Buffer, owner: object): void {
    this.sessions.set(key.toString('hex'), owner);
  }

  /** Forgets a key, unless another session has taken it since (the server reuses process ids). */
  remove(key: Buffer, owner: object): void {
    const hex = key.toString('hex');
    if (this.sessions.get(hex) === owner) this.sessions.delete(hex);
  }

  get size(): number {
    return this.sessions.size;
  }

  /**
   * Relays a CancelRequest if its key belongs to a live session; unknown keys are dropped, as the
   * server would. Resolves once the server has closed the forwarded request (it has acted on it).
   */
  async cancel(key: Buffer, from: string): Promise<void> {
    if (!this.sessions.has(key.toString('hex'))) {
      this.logger.info({ client: from }, 'cancel request with an unknown key ignored');
      return;
    }
    await sendCancel(this.target, key).catch((error: Error) =>
      this.logger.warn({ client: from, err: error.message }, 'could not pass a cancel request to the server'),
    );
  }
}
