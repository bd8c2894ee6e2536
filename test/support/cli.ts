import { PassThrough } from 'node:stream';
import { main } from '../../src/cli/main.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process, as a user would from a shell, and captures what it prints. */
export async function runCli(args: string[], env: { postgresUrl?: string } = {}): Promise<CliResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const argv = env.postgresUrl ? ['--postgres-url', env.postgresUrl, '--log-level', 'silent', ...args] : args;
  const code = await main(argv, { stdout, stderr });
  return { code, stdout: out, stderr: err };
}
