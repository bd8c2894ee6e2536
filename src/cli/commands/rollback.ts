import type { Command } from 'commander';
import { addEngineOptions, withMigrator } from '../engine.js';
import { writeLine, type CliIO } from '../io.js';

export function registerRollback(program: Command, io: CliIO): void {
  const command = program
    .command('rollback')
    .description('roll the active migration back: undo everything start did')
    .action(async (_options: unknown, cmd: Command) => {
      await withMigrator(cmd, io, async (migrator) => {
        const record = await migrator.rollback();
        writeLine(io.stdout, `${record.name}: rolled back`);
      });
    });
  addEngineOptions(command);
}
