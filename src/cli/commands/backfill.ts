import type { Command } from 'commander';
import { withConnection } from '../../db/connection.js';
import { UsageError } from '../../errors/index.js';
import { pauseBackfills, resumeBackfills } from '../../state/backfill-pauses.js';
import { actor } from '../../state/migrations.js';
import { initStateSchema } from '../../state/schema.js';
import { addEngineOptions, withMigrator } from '../engine.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings } from '../settings.js';
import { versionSchemaReady } from '../../engine/status.js';

export function registerBackfill(program: Command, io: CliIO): void {
  const command = program
    .command('backfill')
    .description('resume an interrupted start (its backfill) from where it stopped; or pause / resume the running backfill from anywhere')
    .option('--pause', "hold the schema's backfills before their next batch (any running tandem sees it), until --resume")
    .option('--resume', 'let paused backfills go on')
    .action(async (options: { pause?: boolean; resume?: boolean }, cmd: Command) => {
      if (options.pause && options.resume) throw new UsageError('--pause and --resume: choose one');
      if (options.pause || options.resume) {
        const settings = commonSettings(cmd, { logTo: io.stderr });
        await withConnection(settings.postgresUrl, async (db) => {
          await initStateSchema(db, settings.stateSchema);
          if (options.pause) {
            await pauseBackfills(db, settings.stateSchema, settings.schema, actor());
            writeLine(io.stdout, `backfills of schema "${settings.schema}" paused: a running one holds before its next batch; tandem backfill --resume lets it go on`);
          } else {
            const lifted = await resumeBackfills(db, settings.stateSchema, settings.schema);
            writeLine(io.stdout, lifted ? `backfills of schema "${settings.schema}" go on` : `backfills of schema "${settings.schema}" were not paused`);
          }
        });
        return;
      }
      await withMigrator(cmd, io, async (migrator) => {
        const record = await migrator.resume();
        writeLine(io.stdout, `${record.name}: backfill finished; ${versionSchemaReady(record)}`);
      });
    });
  addEngineOptions(command);
}
