/**
 * npm's install step for the native forwarder (native/forwarder.c). It never fails the install:
 * without a compiler, on another OS, or when the build breaks, the proxy forwards in Node instead
 * (`tandem proxy` logs which one it uses). TANDEM_NATIVE=0 skips the build.
 */
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const say = (text) => process.stderr.write(`tandem: ${text}\n`);

if (process.platform !== 'linux') {
  say(`the native forwarder is Linux-only (this is ${process.platform}); the proxy will forward in Node`);
} else if (process.env.TANDEM_NATIVE === '0') {
  say('TANDEM_NATIVE=0: not building the native forwarder; the proxy will forward in Node');
} else {
  // npm hands its own node-gyp to install scripts; outside npm, one on the PATH.
  const gyp = process.env.npm_config_node_gyp;
  const [command, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
  const result = spawnSync(command, args, { cwd: here, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (result.status === 0) {
    say('built the native forwarder (native/build/Release/tandem_forwarder.node)');
  } else {
    const why = result.error ? result.error.message : (result.stderr ?? '').trim().split('\n').slice(-8).join('\n');
    say(`the native forwarder did not build; the proxy will forward in Node.\n${why}`);
  }
}
