import type { Command } from 'commander';
import { withConnection } from '../../db/connection.js';
import { TandemError } from '../../errors/index.js';
import { listVersions } from '../../state/versions.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings } from '../settings.js';

export function registerLatest(program: Command, io: CliIO): void {
  program
    .command('latest')
    .description('print the latest version schema name')
    .option('--migration', 'print the migration name instead of the schema')
    .action(async (options: { migration?: boolean }, cmd: Command) => {
      const settings = commonSettings(cmd, { logTo: io.stderr });
      const versions = await withConnection(settings.postgresUrl, (db) => listVersions(db, settings.stateSchema, settings.schema));
      const latest = versions[0];
      if (!latest) throw new TandemError({ kind: 'no_versions', schema: settings.schema });
      writeLine(io.stdout, options.migration ? latest.migration : latest.versionSchema);
    });
}
