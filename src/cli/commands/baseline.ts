import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { withConnection } from '../../db/connection.js';
import { BASELINE_PLACEHOLDER, recordBaseline } from '../../engine/baseline.js';
import { UsageError } from '../../errors/index.js';
import { writeMigrationFile } from '../../migration/write.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings } from '../settings.js';

export function registerBaseline(program: Command, io: CliIO): void {
  program
    .command('baseline')
    .description('adopt the schema as it stands as the start of the history, running nothing (as pgroll baseline)')
    .argument('<version>', "the baseline's migration name; files that sort up to it are not applied again")
    .argument('<dir>', 'the migrations folder, where its placeholder file goes')
    .option('-y, --yes', 'confirm: the history restarts here (tandem does not prompt)')
    .option('-j, --json', 'write the placeholder file as JSON instead of YAML')
    .action(async (version: string, dir: string, options: { yes?: boolean; json?: boolean }, cmd: Command) => {
      const settings = commonSettings(cmd, { logTo: io.stderr });
      if (!options.yes) throw new UsageError('a baseline restarts the migration history here: confirm with --yes');
      await mkdir(dir, { recursive: true });
      const file = join(dir, `${version}.${options.json ? 'json' : 'yaml'}`);
      await writeMigrationFile(file, BASELINE_PLACEHOLDER, options.json ? 'json' : 'yaml');
      try {
        await withConnection(settings.postgresUrl, (db) => recordBaseline(db, { stateSchema: settings.stateSchema, schema: settings.schema, version }), { role: settings.role });
      } catch (error) {
        await rm(file, { force: true });
        throw error;
      }
      writeLine(io.stdout, `baseline ${version} recorded for schema "${settings.schema}"; placeholder ${file} written`);
      writeLine(io.stdout, `tandem migrate ${dir} applies only the files that sort after it`);
    });
}
