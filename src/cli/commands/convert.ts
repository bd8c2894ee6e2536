import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve, sep } from 'node:path';
import { Option, type Command } from 'commander';
import { TandemError, UsageError } from '../../errors/index.js';
import { convertSql, type Conversion } from '../../convert/convert.js';
import { prefixedByPosition, readHistory, sortsInRunOrder } from '../../convert/history.js';
import { conversionHeader, noteLines, renderConversion, reviewCount, toJson, toYaml, type OutputFormat } from '../../convert/emit.js';
import { writeLine, type CliIO } from '../io.js';

interface ConvertFlags {
  output?: string;
  format?: OutputFormat;
  name?: string;
}

export function registerConvert(program: Command, io: CliIO): void {
  program
    .command('convert')
    .description('turn a plain SQL migration, or a folder of them (Prisma, Drizzle, Flyway, numbered .sql files), into tandem (pgroll-format) migrations')
    .argument('<file>', 'the .sql file, or the folder of a migration history')
    .option('-o, --output <path>', 'write the migration to this file, or one file per migration into this directory (ending in /; required for a folder)')
    .addOption(new Option('--format <format>', 'yaml or json (default: from the --output extension, else yaml)').choices(['yaml', 'json']))
    .option('--name <name>', 'the migration name (default: the file name without .sql; a Prisma migration.sql takes its folder\'s name)')
    .action(async (file: string, flags: ConvertFlags, command: Command) => {
      const { schema } = command.optsWithGlobals<{ schema: string }>();
      const format = flags.format ?? (flags.output && extname(flags.output).toLowerCase() === '.json' ? 'json' : 'yaml');
      if ((await stat(file).catch(() => undefined))?.isDirectory()) {
        if (flags.name) throw new UsageError('--name names one migration; a folder\'s migrations take their names from its files');
        if (!flags.output) throw new UsageError('converting a folder writes one file per migration', 'give -o a directory (ending in /)');
        await convertFolder(file, flags.output.endsWith('/') || flags.output.endsWith(sep) ? flags.output : `${flags.output}/`, format, schema, io);
        return;
      }
      const name = flags.name ?? defaultName(file);
      if (!name) throw new UsageError('--name must not be empty');
      const conversion = await convertSql(await readSource(file), file, { name, schema });
      // YAML carries the notes as comments; JSON cannot, so they go to stderr.
      if (format === 'json') for (const line of noteLines(conversion, file)) writeLine(io.stderr, line);
      const count = conversion.migrations.length;
      if (!flags.output) {
        io.stdout.write(renderConversion(conversion, format, basename(file)));
        if (count > 1) writeLine(io.stderr, `tandem convert: the SQL needs ${count} migrations; -o DIR/ writes one file each`);
        return;
      }
      const written = await writeMigrations(conversion, flags.output, format, basename(file));
      const reviews = reviewCount(conversion);
      writeLine(io.stderr, `wrote ${written.join(', ')}${reviews ? `: ${reviews} REVIEW note${reviews === 1 ? '' : 's'} to check` : ''}`);
    });
}

/** Prisma keeps every migration as `<timestamp>_<name>/migration.sql`: the folder is its name. */
function defaultName(file: string): string {
  const own = basename(file, extname(file));
  return own === 'migration' && extname(file).toLowerCase() === '.sql' ? basename(dirname(resolve(file))) : own;
}

/**
 * Every migration of a history, converted in the order its tool runs them and written to `output`
 * under names that `tandem migrate` runs in that same order.
 */
async function convertFolder(dir: string, output: string, format: OutputFormat, schema: string, io: CliIO): Promise<void> {
  const history = await readHistory(dir);
  if (!history.entries.length) throw new TandemError({ kind: 'convert_empty', source: 'folder' }, { file: dir });
  const convertAll = async (names: string[]) => {
    const conversions: Conversion[] = [];
    for (const [index, entry] of history.entries.entries()) conversions.push(await convertSql(await readSource(entry.file), entry.file, { name: names[index]!, schema }));
    return conversions;
  };
  const baseNames = history.entries.map((entry) => entry.name);
  let conversions = await convertAll(baseNames);
  const prefixed = !sortsInRunOrder(conversions.flatMap((c) => c.migrations.map((m) => m.name)));
  if (prefixed) conversions = await convertAll(prefixedByPosition(baseNames));
  const written: string[] = [];
  let reviews = 0;
  for (const [index, conversion] of conversions.entries()) {
    const source = history.entries[index]!.file;
    if (format === 'json') for (const line of noteLines(conversion, source)) writeLine(io.stderr, line);
    written.push(...(await writeMigrations(conversion, output, format, source)));
    reviews += reviewCount(conversion);
  }
  for (const skipped of history.skipped) writeLine(io.stderr, `skipped ${skipped}`);
  if (prefixed) writeLine(io.stderr, 'the migration names are numbered (0001_…), as their own order differs from the order the files run in');
  writeLine(
    io.stderr,
    `converted ${history.entries.length} ${history.layout} migration${history.entries.length === 1 ? '' : 's'} into ${written.length} in ${output}` +
      `${reviews ? `: ${reviews} REVIEW note${reviews === 1 ? '' : 's'} to check` : ''}`,
  );
}

/** Writes to a file, or to `<dir>/<migration name>.<ext>` per migration when `output` is a directory. */
async function writeMigrations(conversion: Conversion, output: string, format: OutputFormat, source: string): Promise<string[]> {
  const isDirectory = output.endsWith('/') || output.endsWith(sep) || (await stat(output).catch(() => undefined))?.isDirectory() === true;
  const header = conversionHeader(conversion, source);
  const text = (index: number) => {
    const migration = conversion.migrations[index]!;
    return format === 'json' ? toJson(migration) : toYaml(migration, index === 0 ? header : []);
  };
  if (!isDirectory) {
    if (conversion.migrations.length > 1) {
      throw new UsageError(
        `the SQL converts to ${conversion.migrations.length} migrations (raw SQL that runs at start must be alone in its migration)`,
        'give -o a directory (ending in /) to get one file per migration',
      );
    }
    await writeFile(output, text(0));
    return [output];
  }
  await mkdir(output, { recursive: true });
  const files: string[] = [];
  for (const [index, migration] of conversion.migrations.entries()) {
    const path = join(output, `${migration.name}.${format}`);
    await writeFile(path, text(index));
    files.push(path);
  }
  return files;
}

async function readSource(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`no such file: ${file}`);
    throw new TandemError({ kind: 'convert_unreadable', problem: 'file', errno: code }, { file });
  }
}
