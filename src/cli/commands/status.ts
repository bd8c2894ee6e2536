import type { Command } from 'commander';
import { readStatusFrom, type EngineStatus } from '../../engine/status.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings } from '../settings.js';

export function registerStatus(program: Command, io: CliIO): void {
  program
    .command('status')
    .description('active migration, versions, backfill progress, live clients per version')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }, cmd: Command) => {
      const settings = commonSettings(cmd, { logTo: io.stderr });
      const status = await readStatusFrom(settings.postgresUrl, settings.stateSchema, settings.schema);
      if (options.json) writeLine(io.stdout, JSON.stringify({ ...pgrollStatus(status), ...status }, null, 2));
      else io.stdout.write(statusText(status));
    });
}

/**
 * pgroll status's three fields, for the scripts that parse it: lower case since pgroll 0.4
 * (`schema` is tandem's own field already, with the same meaning), capitalised before.
 */
function pgrollStatus(status: EngineStatus): { Schema: string; Version: string; Status: string; version: string; status: string } {
  const latest = status.versions[0]?.versionSchema ?? '';
  const prefix = `${status.schema}_`;
  // pgroll's version is the version schema without "<schema>_", the name of the migration in most cases.
  const version = latest.startsWith(prefix) ? latest.slice(prefix.length) : latest;
  const state = !version ? 'No migrations' : status.active ? 'In progress' : 'Complete';
  return { Schema: status.schema, Version: version, Status: state, version, status: state };
}

export function statusText(status: EngineStatus): string {
  const lines: string[] = [];
  if (!status.initialized) {
    return `schema "${status.schema}": tandem has not been used here yet (no state schema "${status.stateSchema}"); run tandem init or tandem start\n`;
  }
  lines.push(`schema "${status.schema}" (state in "${status.stateSchema}")`);
  for (const [i, active] of status.activeMigrations.entries()) {
    const stacked = i > 0 ? ` (stacked on ${status.activeMigrations[i - 1]!.name})` : '';
    lines.push('', `active migration: ${active.name}${stacked} — ${active.status}, started ${when(active.startedAt)} by ${active.startedBy}`);
    if (active.status !== 'active') lines.push(`  progress: step ${active.step} of ${active.steps}`);
    if (active.run?.state === 'interrupted') {
      lines.push(`  INTERRUPTED: no tandem process is running it; ${active.run.continueWith}`);
    } else if (active.run) {
      lines.push(`  running now (tandem's server session: pid ${active.run.serverPid})`);
    }
    if (active.error) lines.push(`  last error: ${active.error.split('\n')[0]}`);
    for (const b of active.backfills) {
      const total = b.rowsTotal ? `/${b.rowsTotal}` : '';
      const pct = b.rowsTotal ? ` (${Math.min(100, Math.round((100 * b.rowsDone) / b.rowsTotal))}%)` : '';
      const rate = b.rowsPerSecond ? `, ${Math.round(b.rowsPerSecond)} rows/s` : '';
      const idle = b.status === 'stalled' ? `, STALLED: no progress for ${b.secondsSinceProgress}s` : '';
      // A backfill row says running until its process records otherwise; a dead process records nothing.
      const state = b.status !== 'done' && active.run?.state === 'interrupted' ? 'interrupted' : b.status;
      const throttled =
        b.throttle && state === 'throttled'
          ? `, THROTTLED (${b.throttle.reason}) for ${b.throttle.seconds}s: ${b.throttle.detail}`
          : b.throttledSeconds > 0
            ? `, throttled ${b.throttledSeconds}s in all`
            : '';
      const lag = b.replicaLagSeconds !== null && state !== 'done' && state !== 'interrupted' ? `, replica lag ${b.replicaLagSeconds.toFixed(1)}s` : '';
      lines.push(`  backfill ${b.table}: ${state}, ${b.rowsDone}${total} rows${pct}${rate}, by ${b.method}${b.keyColumns.length ? ` (${b.keyColumns.join(', ')})` : ''}${idle}${throttled}${lag}`);
    }
    if (active.status === 'active' && i > 0) {
      lines.push(`  tandem complete completes ${status.activeMigrations[0]!.name} first`);
    } else if (active.status === 'active') {
      const check = active.completeCheck;
      if (check && !check.safe) {
        const count = check.clients === null ? 'an unknown number of clients' : `${check.clients} live client${check.clients === 1 ? '' : 's'}`;
        lines.push(`  tandem complete would refuse now: ${check.versionSchema} has ${count} (${check.details.join('; ')})`);
      } else {
        if (check?.noProxies) lines.push(`  (no tandem proxy reports on this schema: clients of ${check.versionSchema} cannot be counted)`);
        lines.push('  tandem complete would now:');
        for (const step of active.completeWouldRun) lines.push(`    - ${step}`);
      }
    }
  }
  if (!status.activeMigrations.length) lines.push('', 'no active migration');
  lines.push('', 'versions:');
  if (!status.versions.length) lines.push('  none yet (clients use the tables directly)');
  for (const v of status.versions) {
    const clients = v.clients === null ? 'clients: unknown' : `clients: ${v.clients}`;
    const last = v.lastQueryAt ? `, last query ${when(v.lastQueryAt)}` : '';
    lines.push(`  ${v.versionSchema.padEnd(40)} ${v.role.padEnd(8)} ${v.migration} (${v.status}) — ${clients}${last}`);
    for (const p of v.proxies.filter((p) => p.clients > 0)) lines.push(`      ${p.clients} via proxy ${p.hostname} pid ${p.pid} (${p.listen})`);
  }
  lines.push('', `proxies: ${status.proxies.live} live${status.proxies.stale.length ? `, ${status.proxies.stale.length} silent (${status.proxies.stale.map((p) => `${p.hostname} pid ${p.pid}, last heartbeat ${when(p.heartbeatAt)}`).join('; ')})` : ''}`);
  if (status.history.length) {
    lines.push('', 'history (newest first):');
    for (const m of status.history.slice(0, 10)) {
      const end = m.completedAt ? `completed ${when(m.completedAt)}` : m.rolledBackAt ? `rolled back ${when(m.rolledBackAt)}` : m.status;
      lines.push(`  ${m.name.padEnd(40)} ${end}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function when(date: Date): string {
  return date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
