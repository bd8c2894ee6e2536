import { withConnection, type Queryable } from '../db/connection.js';
import { MigrationStore, type MigrationRecord } from '../state/migrations.js';
import { stateSchemaExists } from '../state/schema.js';
import { BackfillStore, type BackfillStatus } from '../state/backfills.js';
import { readMigrationLockHolder } from '../state/migration-lock.js';
import { listVersions, type VersionInfo } from '../state/versions.js';
import { DEFAULT_STALE_AFTER_MS, readLiveClients } from '../state/heartbeats.js';
import { checkRetirement, type RetirementCheck } from './drain.js';
import { whatWorksNow } from './next-command.js';
import { createsVersionSchema } from '../core/steps.js';

export interface MigrationSummary {
  name: string;
  status: MigrationRecord['status'];
  versionSchema: string;
  startedAt: Date;
  startedBy: string;
  completedAt: Date | null;
  rolledBackAt: Date | null;
  error: string | null;
}

export interface ActiveMigration extends MigrationSummary {
  /** Steps of the current phase done, and how many there are. */
  step: number;
  steps: number;
  /** What each step of the current phase does (start's steps once the migration is active). */
  phaseSteps: string[];
  backfills: BackfillStatus[];
  /** What `tandem complete` would do now, step by step. */
  completeWouldRun: string[];
  /** Whether complete would go ahead now, judged on the proxies' heartbeats. */
  completeCheck: RetirementCheck | null;
  /**
   * For a migration in the middle of start, complete or rollback: whether a tandem process is at it
   * now (it holds the schema's lock) or the run was interrupted, and the command that goes on.
   */
  run: { state: 'running' | 'interrupted'; serverPid: number | null; continueWith: string } | null;
}

export interface VersionStatus extends VersionInfo {
  role: 'latest' | 'previous' | 'older';
  /** Live clients across the proxies that report it; null when none does. */
  clients: number | null;
  lastQueryAt: Date | null;
  proxies: { proxyId: string; hostname: string; pid: number; listen: string; clients: number; lastQueryAt: Date | null }[];
}

export interface EngineStatus {
  schema: string;
  stateSchema: string;
  initialized: boolean;
  /** The oldest migration in flight: the one `tandem complete` works on. */
  active: ActiveMigration | null;
  /** Every migration in flight, oldest first (more than one when migrations are stacked). */
  activeMigrations: ActiveMigration[];
  versions: VersionStatus[];
  /** Proxies with a fresh heartbeat for this schema, and those gone quiet. */
  proxies: { live: number; stale: { hostname: string; pid: number; listen: string; heartbeatAt: Date }[] };
  history: MigrationSummary[];
}

/** What an active migration offers the new app: its version schema, or none when started with --use-version-schema=false. */
export function versionSchemaReady(record: Pick<MigrationRecord, 'versionSchema' | 'plan'>): string {
  return createsVersionSchema(record.plan) ? `version schema ${record.versionSchema} is ready` : 'no version schema (--use-version-schema=false)';
}

function summary(record: MigrationRecord): MigrationSummary {
  return {
    name: record.name,
    status: record.status,
    versionSchema: record.versionSchema,
    startedAt: record.startedAt,
    startedBy: record.startedBy,
    completedAt: record.completedAt,
    rolledBackAt: record.rolledBackAt,
    error: record.error,
  };
}

export async function readStatus(db: Queryable, stateSchema: string, schema: string, staleAfterMs = DEFAULT_STALE_AFTER_MS): Promise<EngineStatus> {
  const empty: EngineStatus = { schema, stateSchema, initialized: false, active: null, activeMigrations: [], versions: [], proxies: { live: 0, stale: [] }, history: [] };
  if (!(await stateSchemaExists(db, stateSchema))) return empty;
  const store = new MigrationStore(db, stateSchema, schema);
  const inFlight = await store.allInFlight();
  const versions = await listVersions(db, stateSchema, schema);
  const history = (await store.history(20)).map(summary);
  const activeMigrations: ActiveMigration[] = [];
  for (const [i, record] of inFlight.entries()) {
    const phaseSteps = record.status === 'completing' ? record.plan.complete : record.status === 'rolling_back' ? record.plan.rollback : record.plan.start;
    activeMigrations.push({
      ...summary(record),
      step: record.status === 'active' ? record.plan.start.length : record.step,
      steps: record.status === 'active' ? record.plan.start.length : phaseSteps.length,
      phaseSteps: (record.status === 'active' ? record.plan.start : phaseSteps).map((s) => s.description),
      backfills: await new BackfillStore(db, stateSchema, record.id).list(),
      completeWouldRun: record.plan.complete.map((s) => s.description),
      // Only the oldest can be completed now; the others wait for it (versions retire in order).
      completeCheck:
        i === 0 && record.status === 'active' && record.plan.retires ? await checkRetirement(db, stateSchema, schema, record.plan.retires, staleAfterMs) : null,
      run: record.status === 'active' ? null : await readRun(db, stateSchema, schema, record),
    });
  }
  const active = activeMigrations[0] ?? null;
  const live = await readLiveClients(db, stateSchema, schema, { staleAfterMs });
  return {
    schema,
    stateSchema,
    initialized: true,
    active,
    activeMigrations,
    versions: versions.map((v, i) => {
      const usage = live.versions[v.versionSchema];
      const reported = usage !== undefined && usage.proxies.length > 0;
      return {
        ...v,
        role: i === 0 ? 'latest' : i === 1 ? 'previous' : 'older',
        clients: reported ? usage.clients : null,
        lastQueryAt: usage?.lastQueryAt ?? null,
        proxies: (usage?.proxies ?? []).map(({ proxyId, hostname, pid, listen, clients, lastQueryAt }) => ({ proxyId, hostname, pid, listen, clients, lastQueryAt })),
      };
    }),
    proxies: { live: live.proxies.length, stale: live.staleProxies.map(({ hostname, pid, listen, heartbeatAt }) => ({ hostname, pid, listen, heartbeatAt })) },
    history,
  };
}

/**
 * readStatus over a connection of its own: for status pages, which poll while the caller's own
 * connection may be inside a migration's transaction.
 */
export function readStatusFrom(postgresUrl: string | undefined, stateSchema: string, schema: string): Promise<EngineStatus> {
  return withConnection(postgresUrl, (db) => readStatus(db, stateSchema, schema), { applicationName: 'tandem status' });
}

/** Who holds the schema's migration lock, if anyone: a live run, or none (an interrupted one). */
async function readRun(db: Queryable, stateSchema: string, schema: string, record: MigrationRecord): Promise<ActiveMigration['run']> {
  const holder = await readMigrationLockHolder(db, stateSchema, schema);
  return { state: holder ? 'running' : 'interrupted', serverPid: holder?.pid ?? null, continueWith: whatWorksNow(record.status, record.file) };
}
