import type { Command } from 'commander';
import { loadMigrationFolder, unappliedMigrations } from '../../migration/folder.js';
import { MigrationStore } from '../../state/migrations.js';
import { addEngineOptions, withMigrator } from '../engine.js';
import { writeLine, type CliIO } from '../io.js';
import { noteOutdated } from './update.js';
import { connect } from '../../db/connection.js';
import { commonSettings } from '../settings.js';
import { stateSchemaExists } from '../../state/schema.js';
import { TandemError, UsageError } from '../../errors/index.js';
import type { Migrator } from '../../engine/migrator.js';
import type { LoadedMigration } from '../../migration/load.js';
import { createsVersionSchema } from '../../core/steps.js';

export function registerMigrate(program: Command, io: CliIO): void {
  const command = program
    .command('migrate')
    .description('start (and complete) every migration in DIR not applied yet, in name order')
    .argument('<dir>', 'folder of migration files (.json, .yaml, .yml)')
    .option('-c, --complete', 'complete the last migration too (the others are always completed, one active at a time)')
    .option('--expect-one', 'refuse, changing nothing, when more than one migration is waiting to be applied')
    .option('--stack', 'start every pending migration stacked on the ones before it and leave them all active (see --max-active-migrations)')
    .action(async (dir: string, options: { complete?: boolean; expectOne?: boolean; stack?: boolean }, cmd: Command) => {
      if (options.stack && options.complete) throw new UsageError('--stack leaves the migrations active; --complete completes them: give one of the two');
      const folder = await loadMigrationFolder(dir);
      const settings = commonSettings(cmd, { logTo: io.stderr });
      const db = await connect(settings.postgresUrl);
      let applied;
      try {
        applied = (await stateSchemaExists(db, settings.stateSchema)) ? await new MigrationStore(db, settings.stateSchema, settings.schema).applied() : [];
      } finally {
        await db.end().catch(() => {});
      }
      const pending = unappliedMigrations(folder, applied);
      for (const loaded of pending) noteOutdated(io, loaded);
      if (options.expectOne && pending.length > 1) {
        throw new TandemError({ kind: 'more_than_one_pending', names: pending.map((p) => p.migration.name) });
      }
      await withMigrator(cmd, io, async (migrator) => {
        // Migrations left in flight (several when stacked), oldest first: migrate completes them in
        // that order before it starts anything.
        const inFlight = applied.filter((record) => record.status !== 'complete');
        const rollingBack = inFlight.find((record) => record.status === 'rolling_back');
        if (rollingBack) {
          throw new TandemError({ kind: 'rollback_unfinished', name: rollingBack.name }, { hint: 'run tandem rollback to finish it first' });
        }
        const starting = inFlight.find((record) => record.status === 'starting');
        if (starting) {
          writeLine(io.stdout, `${starting.name}: resuming its interrupted start`);
          await migrator.resume();
        }
        if (options.stack) {
          await startStacked(migrator, io, inFlight.map((record) => record.name), pending);
          return;
        }
        if (inFlight.length && !(pending.length || options.complete)) {
          const names = inFlight.map((record) => record.name);
          writeLine(io.stdout, `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} active; nothing else to apply (use --complete to complete ${names.length === 1 ? 'it' : 'them'})`);
          return;
        }
        for (const record of inFlight) {
          await migrator.complete();
          writeLine(io.stdout, `${record.name}: completed`);
        }
        if (!pending.length) {
          writeLine(io.stdout, `up to date: ${folder.length} migration${folder.length === 1 ? '' : 's'} applied`);
          return;
        }
        for (const [i, loaded] of pending.entries()) {
          const last = i === pending.length - 1;
          const { record, warnings } = await migrator.start(loaded, { complete: !last || options.complete });
          for (const warning of warnings) writeLine(io.stderr, `tandem: warning: ${warning}`);
          writeLine(io.stdout, `${record.name}: ${!last || options.complete ? 'started and completed' : 'started'} (${createsVersionSchema(record.plan) ? record.versionSchema : 'no version schema'})`);
        }
      });
    });
  addEngineOptions(command);
}

/** `migrate --stack`: every pending migration started on top of the active ones, all left active. */
async function startStacked(migrator: Migrator, io: CliIO, active: string[], pending: LoadedMigration[]): Promise<void> {
  if (!pending.length) {
    writeLine(io.stdout, active.length ? `${active.join(', ')} ${active.length === 1 ? 'is' : 'are'} active; nothing else to apply` : 'up to date: nothing to apply');
    return;
  }
  await migrator.refuseStackingAll(pending);
  let below = active.at(-1);
  for (const loaded of pending) {
    const { record, warnings } = await migrator.start(loaded);
    for (const warning of warnings) writeLine(io.stderr, `tandem: warning: ${warning}`);
    writeLine(io.stdout, `${record.name}: started${below ? `, stacked on ${below}` : ''} (${record.versionSchema})`);
    below = record.name;
  }
}
