import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../../errors/index.js';
import { listMigrationFiles } from '../../migration/folder.js';
import { nameProblem } from '../../migration/names.js';
import { writeMigrationFile } from '../../migration/write.js';
import { writeLine, type CliIO } from '../io.js';

export function registerCreate(program: Command, io: CliIO): void {
  program
    .command('create')
    .description('write a new migration file with no operations yet, to fill in (as pgroll create, without its prompts)')
    .requiredOption('-n, --name <name>', 'the migration name, which is the file name: it must sort after the folder\'s migrations')
    .option('-e, --empty', "pgroll's flag for a file without operations; tandem's files always start so")
    .option('-j, --json', 'write JSON instead of YAML')
    .option('--dir <dir>', 'the migrations folder', '.')
    .action(async (options: { name: string; json?: boolean; dir: string }) => {
      const problem = nameProblem(options.name) ?? (/[/\\]/.test(options.name) ? { character: '"/"', position: 0, why: 'the name is the file name' } : undefined);
      if (problem) throw new UsageError(`--name ${JSON.stringify(options.name)} contains ${problem.character}: ${problem.why}`);
      await mkdir(options.dir, { recursive: true });
      const existing = await listMigrationFiles(options.dir);
      const file = join(options.dir, `${options.name}.${options.json ? 'json' : 'yaml'}`);
      if (await access(file).then(() => true, () => false)) throw new UsageError(`${file} exists already`);
      await writeMigrationFile(file, { operations: [] }, options.json ? 'json' : 'yaml');
      writeLine(io.stdout, `wrote ${file}: add its operations before tandem start`);
      const last = existing.at(-1);
      // migrate applies a folder in name order; a new file that sorts before applied ones is refused there.
      if (last && `${options.name}.${options.json ? 'json' : 'yaml'}` < last) {
        writeLine(io.stderr, `tandem: warning: ${options.name} sorts before ${last}: tandem migrate applies files in name order (number the name, e.g. ${String(existing.length + 1).padStart(2, '0')}_${options.name})`);
      }
    });
}
