import type { Command } from 'commander';
import { DEFAULT_STALE_AFTER_MS } from '../../state/heartbeats.js';
import { addEngineOptions, withMigrator } from '../engine.js';
import { writeLine, type CliIO } from '../io.js';
import { durationOption } from '../settings.js';
import { createsVersionSchema } from '../../core/steps.js';

export function registerComplete(program: Command, io: CliIO): void {
  const command = program
    .command('complete')
    .description('complete the active migration: retire the previous version and contract the schema')
    .option('--force', 'retire the previous version even while proxies report clients on it')
    .option('--wait-for-drain <duration>', 'wait up to this long (e.g. 5m) for the previous version to have no clients', durationOption('--wait-for-drain'))
    .option('--stale-after <duration>', 'ignore proxy heartbeats older than this', durationOption('--stale-after'), DEFAULT_STALE_AFTER_MS)
    .action(async (options: { force?: boolean; waitForDrain?: number; staleAfter: number }, cmd: Command) => {
      await withMigrator(cmd, io, async (migrator) => {
        let last = '';
        const record = await migrator.complete({
          force: options.force,
          waitForDrainMs: options.waitForDrain,
          staleAfterMs: options.staleAfter,
          onDrainWait: (check) => {
            const line = `waiting for ${check.versionSchema} to drain: ${check.clients === null ? 'client count unknown' : `${check.clients} client${check.clients === 1 ? '' : 's'} left`}`;
            if (line !== last) writeLine(io.stderr, line);
            last = line;
          },
        });
        writeLine(io.stdout, `${record.name}: completed; ${createsVersionSchema(record.plan) ? `${record.versionSchema} is the only version schema` : 'no version schema is left'}`);
      });
    });
  addEngineOptions(command);
}
