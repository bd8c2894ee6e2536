import type { Command } from 'commander';
import { loadMigrationFile } from '../../migration/load.js';
import { withMigrator } from '../engine.js';
import { writeLine, type CliIO } from '../io.js';
import { noteOutdated } from './update.js';

export function registerValidate(program: Command, io: CliIO): void {
  program
    .command('validate')
    .description('check a migration file against the live database as start would, changing nothing (as pgroll validate)')
    .argument('<file>', 'the migration file')
    .action(async (file: string, _options: unknown, cmd: Command) => {
      const loaded = await loadMigrationFile(file);
      noteOutdated(io, loaded);
      await withMigrator(cmd, io, async (migrator) => {
        const { warnings, versionSchema } = await migrator.plan(loaded);
        for (const warning of warnings) writeLine(io.stderr, `tandem: warning: ${warning}`);
        writeLine(io.stdout, `${loaded.migration.name}: valid; start would create version schema ${versionSchema}`);
      });
    });
}
