import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, extname, join, sep } from 'node:path';
import { Option, type Command } from 'commander';
import { TandemError, UsageError } from '../../errors.js';
import { convertSql, type Conversion } from '../../convert/convert.js';
import { conversionHeader, noteLines, renderConversion, toJson, toYaml, type OutputFormat } from '../../convert/emit.js';
import { writeLine, type CliIO } from '../io.js';

interface ConvertFlags {
  output?: string;
  format?: OutputFormat;
  name?: string;
}

export function registerConvert(program: Command, io: CliIO): void {
  program
    .command('convert')
    .description('turn a plain SQL migration into tandem (pgroll-format) migrations')
    .argument('<file>', 'the .sql file')
    .option('-o, --output <path>', 'write the migration to this file, or one file per migration into this directory (ending in /)')
    .addOption(new Option('--format <format>', 'yaml or json (default: from the --output extension, else yaml)').choices(['yaml', 'json']))
    .option('--name <name>', 'the migration name (default: the file name without .sql)')
    .action(async (file: string, flags: ConvertFlags, command: Command) => {
      const { schema } = command.optsWithGlobals<{ schema: string }>();
      const format = flags.format ?? (flags.output && extname(flags.output).toLowerCase() === '.json' ? 'json' : 'yaml');
      const name = flags.name ?? basename(file, extname(file));
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
      const reviews = conversion.migrations.flatMap((m) => m.operations.flatMap((op) => op.notes)).filter((n) => n.level === 'review').length;
      writeLine(io.stderr, `wrote ${written.join(', ')}${reviews ? `: ${reviews} REVIEW note${reviews === 1 ? '' : 's'} to check` : ''}`);
    });
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
    throw new TandemError('convert_unreadable', `cannot read the file (${code})`, { file });
  }
}
