import { Argument, type Command } from 'commander';
import { withConnection } from '../../db/connection.js';
import { TandemError, UsageError } from '../../errors/index.js';
import { loadMigrationFolder } from '../../migration/folder.js';
import { versionSchemaName } from '../../migration/names.js';
import { listVersions } from '../../state/versions.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings, type CommonSettings } from '../settings.js';

type What = 'schema' | 'migration' | 'url';

export function registerLatest(program: Command, io: CliIO): void {
  program
    .command('latest')
    .description('print the latest version schema (schema, the default), its migration (migration), or a connection string that uses it (url), as pgroll latest does')
    .addArgument(new Argument('[what]', 'schema, migration or url').choices(['schema', 'migration', 'url']).default('schema'))
    .argument('[connection]', 'for url: the connection string to extend (default: the one tandem connects with)')
    .option('--migration', 'the same as latest migration')
    .option('-l, --local <dir>', 'read the latest migration from a folder of migration files instead of the database')
    .action(async (what: What, connection: string | undefined, options: { migration?: boolean; local?: string }, cmd: Command) => {
      const settings = commonSettings(cmd, { logTo: io.stderr });
      if (connection !== undefined && what !== 'url') throw new UsageError(`latest ${what} takes no connection string (only latest url does)`);
      const latest = options.local ? await latestLocal(options.local, settings) : await latestApplied(settings);
      if (what === 'url') {
        const base = connection ?? settings.postgresUrl;
        if (!base) throw new UsageError('latest url needs a connection string: give it, or --postgres-url, DATABASE_URL or PGROLL_PG_URL');
        writeLine(io.stdout, withSearchPath(base, latest.versionSchema));
        // stdout stays the one line a script captures; the proxy's form is for the person reading.
        writeLine(io.stderr, `tandem: through tandem proxy, name the version in the database instead: ${databaseOf(base)}@${latest.migration}`);
        return;
      }
      writeLine(io.stdout, what === 'migration' || options.migration ? latest.migration : latest.versionSchema);
    });
}

interface Latest {
  migration: string;
  versionSchema: string;
}

async function latestApplied(settings: CommonSettings): Promise<Latest> {
  const versions = await withConnection(settings.postgresUrl, (db) => listVersions(db, settings.stateSchema, settings.schema));
  const latest = versions[0];
  if (!latest) throw new TandemError({ kind: 'no_versions', schema: settings.schema });
  return latest;
}

async function latestLocal(dir: string, settings: CommonSettings): Promise<Latest> {
  const last = (await loadMigrationFolder(dir)).at(-1);
  if (!last) throw new UsageError(`the folder "${dir}" has no migration files`);
  return { migration: last.migration.name, versionSchema: versionSchemaName(last.migration, settings.schema) };
}

/** The connection string with `options=-c search_path=<schema>`, the way pgroll latest url writes it. */
function withSearchPath(connection: string, versionSchema: string): string {
  let url: URL;
  try {
    url = new URL(connection);
  } catch {
    throw new UsageError(`cannot read the connection string ${JSON.stringify(connection)} as a URL`);
  }
  url.searchParams.set('options', `-c search_path=${versionSchema}`);
  url.search = url.searchParams.toString().replace(/\+/g, '%20');
  return url.toString();
}

function databaseOf(connection: string): string {
  return decodeURIComponent(new URL(connection).pathname.slice(1)) || 'DATABASE';
}
