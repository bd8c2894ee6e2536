/**
 * The proxy's heartbeat loop: every interval, for each database it serves, refresh the version list
 * (which is also how retired versions are noticed without a NOTIFY) and rewrite this proxy's row.
 */
import type { Logger } from '../observe/logger.js';
import { deleteHeartbeat, expireHeartbeats, writeHeartbeat, type VersionHeartbeat } from '../state/heartbeats.js';
import type { Catalogs } from './catalog.js';
import type { UsageLedger } from './usage.js';

export interface HeartbeatIdentity {
  proxyId: string;
  hostname: string;
  pid: number;
  listen: string;
  schema: string;
  stateSchema: string;
  startedAt: Date;
}

/** SQLSTATEs meaning "no state schema here (yet)": that database gets no heartbeat. */
const NO_STATE_SCHEMA = new Set(['42P01', '3F000']);

export class HeartbeatLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly identity: HeartbeatIdentity,
    private readonly catalogs: Catalogs,
    private readonly ledger: UsageLedger,
    private readonly options: { intervalMs: number; expireAfterMs: number; logger: Logger },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.beat(), this.options.intervalMs);
    this.timer.unref();
  }

  /** One beat now; concurrent callers share it. */
  beat(): Promise<void> {
    this.running ??= this.beatAll().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Stops beating and deletes this proxy's rows, so status stops counting it at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => {});
    await Promise.all(
      this.catalogs.all().map((catalog) =>
        catalog
          .connection()
          .then((db) => deleteHeartbeat(db, this.identity.stateSchema, this.identity.proxyId))
          .catch(() => {}),
      ),
    );
  }

  private async beatAll(): Promise<void> {
    const usage = this.ledger.snapshot().versions;
    await Promise.all(
      this.catalogs.all().map(async (catalog) => {
        try {
          const versions = await catalog.refresh();
          const entries: Record<string, VersionHeartbeat> = {};
          for (const version of versions) entries[version.versionSchema] = { clients: 0, last_query_at: null };
          for (const used of usage) {
            if (used.database !== catalog.database || used.version === '') continue;
            entries[used.version] = {
              clients: used.clients,
              last_query_at: used.lastQueryAt ? new Date(used.lastQueryAt).toISOString() : null,
            };
          }
          const db = await catalog.connection();
          await writeHeartbeat(db, this.identity.stateSchema, { ...this.identity, versions: entries });
          await expireHeartbeats(db, this.identity.stateSchema, this.options.expireAfterMs);
        } catch (error) {
          const code = (error as { code?: string }).code;
          if (code && NO_STATE_SCHEMA.has(code)) return;
          this.options.logger.warn({ database: catalog.database, err: (error as Error).message }, 'heartbeat failed');
        }
      }),
    );
  }
}
