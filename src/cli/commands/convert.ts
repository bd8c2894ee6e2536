import { readFile, writeFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { Option, type Command } from 'commander';
import { TandemError, UsageError } from '../../errors.js';
import { convertSql } from '../../convert/convert.js';
import { noteLines, toJson, toYaml, type OutputFormat } from '../../convert/emit.js';
import { writeLine, type CliIO } from '../io.js';

interface ConvertFlags {
  output?: string;
  format?: OutputFormat;
  name?: string;
}

export function registerConvert(program: Command, io: CliIO): void {
  program
    .command('convert')
    .description('turn a plain SQL migration into a tandem (pgroll-format) migration')
    .argument('<file>', 'the .sql file')
    .option('-o, --output <file>', 'write the migration here instead of stdout')
    .addOption(new Option('--format <format>', 'yaml or json (default: from the --output extension, else yaml)').choices(['yaml', 'json']))
    .option('--name <name>', 'the migration name (default: the file name without .sql)')
    .action(async (file: string, flags: ConvertFlags, command: Command) => {
      const { schema } = command.optsWithGlobals<{ schema: string }>();
      const format = flags.format ?? (flags.output && extname(flags.output).toLowerCase() === '.json' ? 'json' : 'yaml');
      const name = flags.name ?? basename(file, extname(file));
      if (!name) throw new UsageError('--name must not be empty');
      const conversion = await convertSql(await readSource(file), file, { name, schema });
      const text = format === 'json' ? toJson(conversion) : toYaml(conversion, basename(file));
      // YAML carries the notes as comments; JSON cannot, so they go to stderr.
      if (format === 'json') for (const line of noteLines(conversion, file)) writeLine(io.stderr, line);
      if (!flags.output) {
        io.stdout.write(text);
        return;
      }
      await writeFile(flags.output, text);
      const reviews = conversion.operations.flatMap((op) => op.notes).filter((note) => note.level === 'review').length;
      const count = conversion.operations.length;
      writeLine(
        io.stderr,
        `wrote ${flags.output}: ${count} operation${count === 1 ? '' : 's'}` + (reviews ? `, ${reviews} REVIEW note${reviews === 1 ? '' : 's'} to check` : ''),
      );
    });
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
