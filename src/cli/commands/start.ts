import type { Command } from 'commander';
import { loadMigrationFile } from '../../migration/load.js';
import { expressionCheckFor } from '../../engine/plan-migration.js';
import { addEngineOptions, withMigrator } from '../engine.js';
import { describePlan } from '../plan-text.js';
import { writeLine, type CliIO } from '../io.js';
import { noteOutdated } from './update.js';
import { createsVersionSchema } from '../../core/steps.js';
import { versionSchemaReady } from '../../engine/status.js';

export function registerStart(program: Command, io: CliIO): void {
  const command = program
    .command('start')
    .description('start a migration (json, yaml or yml): expand the schema and create its version schema')
    .argument('<file>', 'the migration file')
    .option('-c, --complete', 'complete the migration right after starting it')
    .option('--dry-run', 'validate and print the plan (every SQL statement) without changing anything')
    .option('-s, --skip-validation', "warn about up/down expressions the server cannot plan instead of refusing them (as pgroll, which checks them only when a row is written)")
    .action(async (file: string, options: { complete?: boolean; dryRun?: boolean; skipValidation?: boolean }, cmd: Command) => {
      const loaded = await loadMigrationFile(file);
      noteOutdated(io, loaded);
      await withMigrator(cmd, io, async (migrator) => {
        if (options.dryRun) {
          const { plan, warnings, versionSchema } = await migrator.plan(loaded, expressionCheckFor(options));
          for (const warning of warnings) writeLine(io.stdout, `-- warning: ${warning}`);
          io.stdout.write(describePlan(loaded.migration.name, versionSchema, plan));
          return;
        }
        const outcome = await migrator.start(loaded, { complete: options.complete, skipValidation: options.skipValidation });
        const { record } = outcome;
        for (const warning of outcome.warnings) writeLine(io.stderr, `tandem: warning: ${warning}`);
        if (outcome.completed) {
          writeLine(io.stdout, `${record.name}: started and completed; ${createsVersionSchema(record.plan) ? `version schema ${record.versionSchema}` : 'no version schema'}`);
        } else {
          writeLine(io.stdout, `${record.name}: ${outcome.resumed ? 'resumed and ' : ''}started; ${versionSchemaReady(record)}`);
          writeLine(
            io.stdout,
            createsVersionSchema(record.plan)
              ? `next: point the new app version at it (search_path ${record.versionSchema}), then tandem complete`
              : 'next: tandem complete (the new app version uses the tables themselves)',
          );
        }
      });
    });
  addEngineOptions(command);
}
