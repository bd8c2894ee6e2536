import type { Command } from 'commander';
import { addEngineOptions, withMigrator } from '../engine.js';
import { writeLine, type CliIO } from '../io.js';

export function registerComplete(program: Command, io: CliIO): void {
  const command = program
    .command('complete')
    .description('complete the active migration: retire the previous version and contract the schema')
    .action(async (_options: unknown, cmd: Command) => {
      await withMigrator(cmd, io, async (migrator) => {
        const record = await migrator.complete();
        writeLine(io.stdout, `${record.name}: completed; ${record.versionSchema} is the only version schema`);
      });
    });
  addEngineOptions(command);
}
