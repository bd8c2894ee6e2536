import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { startDev } from '../../dev/session.js';
import { UsageError } from '../../errors/index.js';
import { parseHostPort } from '../../proxy/config.js';
import { writeLine, type CliIO } from '../io.js';
import { commonSettings, positiveInteger } from '../settings.js';

/** The bundled example, for a first run with no migrations folder of one's own. */
const EXAMPLES = fileURLToPath(new URL('../../../examples/migrations', import.meta.url));

export function registerDev(program: Command, io: CliIO): void {
  program
    .command('dev')
    .description('embedded PostgreSQL + proxy for local work, nothing to install')
    .argument('[dir]', 'migrations folder (default: ./migrations, else the bundled examples)')
    .option('--data <dir>', 'keep the database in this folder between runs (default: a temporary one, removed on exit)')
    .option('--pg-port <port>', 'port of the embedded PostgreSQL (default: any free port)', positiveInteger('--pg-port'))
    .option('--listen <host:port>', 'where the proxy listens', '127.0.0.1:6432')
    .option('--http <host:port>', 'proxy status and metrics endpoint', '127.0.0.1:6433')
    .option('--watch', 'start new migration files as they appear in the folder')
    .action(async (dir: string | undefined, options: { data?: string; pgPort?: number; listen: string; http: string; watch?: boolean }, cmd: Command) => {
      const settings = commonSettings(cmd, { connects: false, logTo: io.stderr, terminalLogFormat: 'pretty' });
      const migrations = dir ?? (existsSync('migrations') ? 'migrations' : EXAMPLES);
      if (!existsSync(migrations)) throw new UsageError(`no migrations folder "${migrations}"`);
      const parse = (text: string, flag: string) => {
        try {
          return parseHostPort(text, flag);
        } catch (error) {
          throw new UsageError((error as Error).message);
        }
      };
      const session = await startDev({
        migrations,
        dataDir: options.data,
        postgresPort: options.pgPort,
        listen: parse(options.listen, '--listen'),
        http: parse(options.http, '--http'),
        watch: Boolean(options.watch),
        logger: settings.logger,
        print: (line) => writeLine(io.stdout, line),
      });
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.removeListener('SIGINT', stop);
          process.removeListener('SIGTERM', stop);
          writeLine(io.stdout, '\nstopping: proxy, then PostgreSQL');
          void session.stop().finally(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
