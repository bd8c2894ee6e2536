import type { Command } from 'commander';
import { addEngineOptions, withMigrator } from '../engine.js';
import { writeLine, type CliIO } from '../io.js';

export function registerBackfill(program: Command, io: CliIO): void {
  const command = program
    .command('backfill')
    .description('resume an interrupted start (its backfill) from where it stopped')
    .action(async (_options: unknown, cmd: Command) => {
      await withMigrator(cmd, io, async (migrator) => {
        const record = await migrator.resume();
        writeLine(io.stdout, `${record.name}: backfill finished; version schema ${record.versionSchema} is ready`);
      });
    });
  addEngineOptions(command);
}
