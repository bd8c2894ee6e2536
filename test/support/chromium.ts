/**
 * A real headless browser (Debian's `chromium` package) for tests of the status page. Tests skip
 * with a printed reason when it is not installed. As root Chromium refuses its sandbox, so it runs
 * without one; it only ever loads pages the test serves on loopback.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inflateSync } from 'node:zlib';

const run = promisify(execFile);

/** Why browser tests cannot run here, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  return spawnSync('chromium', ['--version']).status === 0 ? undefined : 'chromium is not installed (Debian: apt-get install -y chromium)';
}

function flags(profile: string): string[] {
  return ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', `--user-data-dir=${profile}`, '--window-size=1200,900'];
}

async function withProfile<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-chromium-'));
  try {
    return await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The DOM after the page loaded and ran its scripts for `scriptMs` of virtual time (Chromium fast-
 * forwards timers, so this is not a wait).
 */
export function dumpDom(url: string, scriptMs = 0): Promise<string> {
  return withProfile(async (profile) => {
    const budget = scriptMs > 0 ? [`--virtual-time-budget=${scriptMs}`] : [];
    const { stdout } = await run('chromium', [...flags(profile), ...budget, '--dump-dom', url], { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  });
}

/** A PNG screenshot of the page. */
export function screenshot(url: string): Promise<Buffer> {
  return withProfile(async (profile) => {
    const file = join(profile, 'page.png');
    await run('chromium', [...flags(profile), `--screenshot=${file}`, url]);
    return readFileSync(file);
  });
}

/** The decoded pixel bytes of a PNG (with each row's filter byte), enough to tell a blank image from a drawn one. */
export function pngPixels(png: Buffer): { width: number; height: number; data: Buffer } {
  if (!png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) throw new Error('not a PNG');
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString('ascii', at + 4, at + 8);
    const body = png.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
    } else if (type === 'IDAT') idat.push(body);
    at += 12 + length;
  }
  return { width, height, data: inflateSync(Buffer.concat(idat)) };
}
