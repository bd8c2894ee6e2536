/**
 * The native forwarder's frame scanner (native/forwarder.c, scan) against the TypeScript one
 * (FrameScanner) on the same streams, cut into every size of piece: the two forwarding paths must
 * agree on where messages begin, what counts as a query, which lengths are broken, and which
 * search_path a server's ParameterStatus carries.
 */
import { describe, expect, it } from 'vitest';
import { FrameScanner, MAX_MESSAGE_LENGTH } from '../../src/proxy/protocol/frames.js';
import { encodeMessage, parseParameterStatus } from '../../src/proxy/protocol/messages.js';
import { selectForwarder } from '../../src/proxy/native.js';

const native = selectForwarder('auto').forwarder;
if (!native) console.log('skipped: the native forwarder is not built here (npm run build:native)');

const message = (type: string, body = '') => encodeMessage(type.charCodeAt(0), Buffer.from(body, 'latin1'));
const parameterStatus = (name: string, value: string) => message('S', `${name}\0${value}\0`);

/** The stream in pieces of `size` bytes (the last one shorter). */
function pieces(stream: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < stream.length; at += size) out.push(stream.subarray(at, at + size));
  return out;
}

/** What the TypeScript scanner sees in the same pieces, in the native scan's terms. */
function typescriptScan(chunks: Buffer[], fromClient: boolean) {
  let queries = 0;
  let terminated = false;
  let lastServerType = 0;
  let searchPath: string | null = null;
  let error: string | null = null;
  const scanner = new FrameScanner(
    (type) => {
      if (!fromClient) lastServerType = type;
      else if (type === 0x51 || type === 0x45) queries++;
      else if (type === 0x58) terminated = true;
    },
    MAX_MESSAGE_LENGTH,
    fromClient
      ? undefined
      : {
          type: 0x53,
          maxLength: 4096,
          onBody: (body) => {
            const { name, value } = parseParameterStatus(body);
            if (name === 'search_path') searchPath = value;
          },
        },
  );
  try {
    for (const chunk of chunks) scanner.scan(chunk);
  } catch (e) {
    error = (e as Error).message;
  }
  return { queries, terminated, lastServerType, searchPath, error, atBoundary: scanner.atBoundary };
}

describe.skipIf(!native)('the native frame scanner', () => {
  const client = Buffer.concat([message('Q', 'SELECT 1\0'), message('P', '\0SELECT $1\0\0\0'), message('B', '\0\0\0\0\0\0\0'), message('E', '\0\0\0\0\0'), message('S'), message('X')]);
  const server = Buffer.concat([
    message('1'),
    parameterStatus('application_name', 'app'),
    parameterStatus('search_path', '"public_01_init", public'),
    message('C', 'SET\0'),
    message('Z', 'I'),
  ]);

  it.each([1, 2, 3, 5, 7, 64, 4096])('agrees with FrameScanner on client and server streams cut into %i-byte pieces', (size) => {
    const fromClient = native!.scanFrames(pieces(client, size), true);
    const ts = typescriptScan(pieces(client, size), true);
    expect(fromClient).toMatchObject({ queries: 2, terminated: true, atBoundary: true, bad: null });
    expect({ queries: ts.queries, terminated: ts.terminated, atBoundary: ts.atBoundary, error: ts.error }).toEqual({ queries: 2, terminated: true, atBoundary: true, error: null });

    const fromServer = native!.scanFrames(pieces(server, size), false);
    const tsServer = typescriptScan(pieces(server, size), false);
    expect(fromServer).toMatchObject({ lastServerType: 0x5a, searchPath: '"public_01_init", public', atBoundary: true, bad: null });
    expect(tsServer).toMatchObject({ lastServerType: 0x5a, searchPath: '"public_01_init", public', atBoundary: true, error: null });
  });

  it('stops mid-message without a boundary, and reports no search_path until the message is whole', () => {
    const partial = server.subarray(0, server.indexOf('search_path') + 8);
    expect(native!.scanFrames([partial], false)).toMatchObject({ atBoundary: false, searchPath: null });
    expect(typescriptScan([partial], false)).toMatchObject({ atBoundary: false, searchPath: null });
  });

  it('finds the same broken lengths, in one piece or split', () => {
    const tooShort = Buffer.from([0x51, 0, 0, 0, 2]);
    expect(native!.scanFrames([tooShort], true).bad).toEqual({ chunk: 0, offset: 0, type: 0x51, length: 2 });
    expect(typescriptScan([tooShort], true).error).toMatch(/invalid length 2 for message type 'Q'/);

    const afterOne = Buffer.concat([message('Q', 'SELECT 1\0'), Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff])]);
    expect(native!.scanFrames([afterOne], true).bad).toEqual({ chunk: 0, offset: 14, type: 0x51, length: 0x7fffffff });
    expect(typescriptScan([afterOne], true).error).toMatch(/invalid length 2147483647 for message type 'Q'/);

    // A header completed in a later piece: the native scanner says it began earlier (-2).
    expect(native!.scanFrames(pieces(tooShort, 2), true).bad).toEqual({ chunk: 2, offset: -2, type: 0x51, length: 2 });
    expect(typescriptScan(pieces(tooShort, 2), true).error).toMatch(/invalid length 2/);
  });

  it('passes a ParameterStatus too long to read, and a search_path of another setting is not taken', () => {
    const long = Buffer.concat([parameterStatus('search_path', 'x'.repeat(5000)), parameterStatus('search_path_extra', 'y'), message('Z', 'I')]);
    expect(native!.scanFrames(pieces(long, 100), false)).toMatchObject({ searchPath: null, atBoundary: true, bad: null, lastServerType: 0x5a });
    expect(typescriptScan(pieces(long, 100), false)).toMatchObject({ searchPath: null, atBoundary: true, error: null });
  });
});
