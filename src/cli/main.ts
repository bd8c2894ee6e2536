import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { exitCodeOf, formatError } from '../errors/index.js';
import { processIO, writeLine, type CliIO } from './io.js';
import { addCommonOptions } from './settings.js';
import { COMMANDS } from './commands/index.js';

// Both src/cli and dist/cli sit two levels below package.json.
const TANDEM_VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

export function buildProgram(io: CliIO): Command {
  const program = new Command('tandem')
    .description('Zero-downtime PostgreSQL schema migrations: expand, run old and new app versions side by side, contract.')
    .version(TANDEM_VERSION, '-V, --version')
    .showHelpAfterError('(run tandem --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    });
  addCommonOptions(program);
  for (const register of COMMANDS) register(program, io);
  for (const command of program.commands) command.exitOverride();
  return program;
}

/** Runs the CLI and returns its exit status: 0 success, 1 the operation failed, 2 bad usage. */
export async function main(argv: string[], io: CliIO = processIO): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; every other commander error is bad usage.
      return error.exitCode === 0 ? 0 : 2;
    }
    writeLine(io.stderr, `tandem: ${formatError(error)}`);
    return exitCodeOf(error);
  }
}
