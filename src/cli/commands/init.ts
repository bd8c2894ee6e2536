import type { Command } from 'commander';
import { withConnection } from '../../db/connection.js';
import { initStateSchema } from '../../state/schema.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings } from '../settings.js';

export function registerInit(program: Command, io: CliIO): void {
  program
    .command('init')
    .description('create the state schema (idempotent)')
    .action(async (_options: unknown, command: Command) => {
      const settings = commonSettings(command, { logTo: io.stderr });
      await withConnection(settings.postgresUrl, (db) => initStateSchema(db, settings.stateSchema));
      writeLine(io.stdout, `state schema "${settings.stateSchema}" is ready`);
    });
}
