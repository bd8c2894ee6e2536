/**
 * npm's install step for the native forwarder (native/forwarder.c). It never fails the install:
 * without a compiler, on another OS, or when the build breaks, the proxy forwards in Node instead
 * (`tandem proxy` logs which one it uses). TANDEM_NATIVE=0 skips the build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const say = (text) => process.stderr.write(`tandem: ${text}\n`);

if (process.platform !== 'linux') {
  say(`the native forwarder is Linux-only (this is ${process.platform}); the proxy will forward in Node`);
} else if (process.env.TANDEM_NATIVE === '0') {
  say('TANDEM_NATIVE=0: not building the native forwarder; the proxy will forward in Node');
} else {
  // npm hands its own node-gyp to install scripts; outside npm, the one npm ships, or one on the PATH.
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const gyp = process.env.npm_config_node_gyp ?? (existsSync(bundled) ? bundled : undefined);
  const args = ['rebuild'];
  // Headers installed beside this node (distribution packages, official tarballs) spare node-gyp a download.
  const prefix = join(dirname(process.execPath), '..');
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  const [command, argv] = gyp ? [process.execPath, [gyp, ...args]] : ['node-gyp', args];
  const result = spawnSync(command, argv, { cwd: here, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (result.status === 0) {
    say('built the native forwarder (native/build/Release/tandem_forwarder.node)');
  } else {
    // node-gyp's own boilerplate (versions, paths, "not ok") says nothing about the cause.
    const boilerplate = /^gyp (info|http|verb)|^gyp ERR! (System|command|cwd|node -v|node-gyp -v|\$npm|not ok)/;
    const lines = (result.stderr ?? '').split('\n').filter((line) => line.trim() && !boilerplate.test(line));
    const why = result.error ? result.error.message : lines.slice(-8).join('\n');
    say(`the native forwarder did not build; the proxy will forward in Node.\n${why}`);
  }
}
