/** The wire layer and routing decisions as pure functions over Buffers and values: no server needed. */
import { describe, expect, it } from 'vitest';
import { FrameReader, FrameScanner, ProtocolError } from '../../src/proxy/protocol/frames.js';
import {
  encodeAuthenticationSASL,
  encodeCancelRequest,
  encodeErrorResponse,
  encodeMessage,
  encodeStartupMessage,
  parseAuthRequest,
  parseErrorFields,
  parseSASLInitialResponse,
  parseStartupPacket,
  PROTOCOL_3_0,
} from '../../src/proxy/protocol/messages.js';
import { chooseRoute, routeRequest, searchPathSchemas, settingInOptions, versionOfSearchPath } from '../../src/proxy/routing.js';
import { parseDuration, parseForwarder, parseHostPort } from '../../src/proxy/config.js';
import type { VersionInfo } from '../../src/state/versions.js';

function untypedBody(packet: Buffer): Buffer {
  const reader = new FrameReader(10_000);
  reader.push(packet);
  return reader.nextUntyped()!;
}

describe('startup packets', () => {
  it('round-trips a StartupMessage, keeping parameter order', () => {
    const packet = encodeStartupMessage(PROTOCOL_3_0, [['user', 'ada'], ['database', 'app@latest'], ['application_name', 'x']]);
    expect(parseStartupPacket(untypedBody(packet))).toEqual({
      kind: 'startup',
      protocol: PROTOCOL_3_0,
      params: [['user', 'ada'], ['database', 'app@latest'], ['application_name', 'x']],
    });
  });

  it('recognises SSLRequest, GSSENCRequest and CancelRequest (with 3.2 long keys)', () => {
    const request = (code: number) => {
      const b = Buffer.alloc(8);
      b.writeInt32BE(8, 0);
      b.writeInt32BE(code, 4);
      return b;
    };
    expect(parseStartupPacket(untypedBody(request(80877103)))).toEqual({ kind: 'ssl' });
    expect(parseStartupPacket(untypedBody(request(80877104)))).toEqual({ kind: 'gssenc' });
    const key = Buffer.alloc(4 + 32, 7);
    expect(parseStartupPacket(untypedBody(encodeCancelRequest(key)))).toEqual({ kind: 'cancel', key });
  });

  it('refuses malformed packets with a ProtocolError', () => {
    const bad = [
      Buffer.from([0, 0, 0, 3]), // length below the minimum
      Buffer.from([0x7f, 0xff, 0xff, 0xff]), // absurd length
    ];
    for (const packet of bad) {
      const reader = new FrameReader(10_000);
      reader.push(packet);
      expect(() => reader.nextUntyped()).toThrow(ProtocolError);
    }
    const noUser = encodeStartupMessage(PROTOCOL_3_0, [['database', 'x']]);
    expect(() => parseStartupPacket(untypedBody(noUser))).toThrow(/no PostgreSQL user name/);
    const v2 = Buffer.alloc(8);
    v2.writeInt32BE(8, 0);
    v2.writeInt32BE(2 << 16, 4);
    expect(() => parseStartupPacket(untypedBody(v2))).toThrow(/unsupported frontend protocol 2\.0/);
    const unterminated = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 3, 0, 0]), Buffer.from('user\0ada')]);
    unterminated.writeInt32BE(unterminated.length, 0);
    expect(() => parseStartupPacket(untypedBody(unterminated))).toThrow(ProtocolError);
  });
});

describe('frame reader and scanner', () => {
  const frames = [encodeMessage(0x51, Buffer.from('SELECT 1\0')), encodeMessage(0x53, Buffer.alloc(0)), encodeMessage(0x58, Buffer.alloc(0))];
  const stream = Buffer.concat(frames);

  it('cuts typed frames out of arbitrary chunking', () => {
    for (let split = 1; split < stream.length; split++) {
      const reader = new FrameReader(1000);
      const types: number[] = [];
      for (const chunk of [stream.subarray(0, split), stream.subarray(split)]) {
        reader.push(chunk);
        for (let f = reader.nextTyped(); f; f = reader.nextTyped()) types.push(f.type);
      }
      expect(types).toEqual([0x51, 0x53, 0x58]);
    }
  });

  it('finds frame boundaries without copying, byte by byte too', () => {
    const types: number[] = [];
    const scanner = new FrameScanner((type) => types.push(type));
    for (const byte of stream) {
      scanner.scan(Buffer.from([byte]));
    }
    expect(types).toEqual([0x51, 0x53, 0x58]);
    expect(scanner.atBoundary).toBe(true);
    scanner.scan(stream.subarray(0, 3));
    expect(scanner.atBoundary).toBe(false);
  });

  it('rejects lengths below 4 or beyond the limit', () => {
    const scanner = new FrameScanner(() => {}, 1000);
    expect(() => scanner.scan(Buffer.from([0x51, 0, 0, 0, 2]))).toThrow(/invalid length 2 for message type 'Q'/);
    expect(() => new FrameScanner(() => {}, 1000).scan(Buffer.from([0x51, 0x7f, 0, 0, 0]))).toThrow(ProtocolError);
  });
});

describe('messages the proxy reads or writes', () => {
  it('encodes ErrorResponse fields that parse back', () => {
    const frame = encodeErrorResponse({ severity: 'FATAL', code: '3D000', message: 'no such version', hint: 'try latest' });
    const fields = parseErrorFields(frame.subarray(5));
    expect(Object.fromEntries(fields)).toEqual({ S: 'FATAL', V: 'FATAL', C: '3D000', M: 'no such version', H: 'try latest' });
  });

  it('rewrites the SASL mechanism list', () => {
    const frame = encodeAuthenticationSASL(['SCRAM-SHA-256']);
    expect(parseAuthRequest(frame.subarray(5))).toEqual({ code: 10, mechanisms: ['SCRAM-SHA-256'] });
  });

  it('reads the channel-binding flag of a SASLInitialResponse', () => {
    const data = Buffer.from('y,,n=,r=abc');
    const length = Buffer.alloc(4);
    length.writeInt32BE(data.length);
    const body = Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), length, data]);
    expect(parseSASLInitialResponse(body)).toEqual({ mechanism: 'SCRAM-SHA-256', channelBindingFlag: 'y' });
  });
});

describe('routing decisions', () => {
  const versions: VersionInfo[] = [
    { migration: '02_b', versionSchema: 'public_02_b', status: 'active', startedAt: new Date(), completedAt: null },
    { migration: '01_a', versionSchema: 'public_01_a', status: 'complete', startedAt: new Date(), completedAt: new Date() },
  ];
  const options = { defaultVersion: 'latest', schema: 'public' };

  it('splits app@version at the last @ and notices a client search_path', () => {
    expect(routeRequest([['user', 'u'], ['database', 'app@02_b']])).toEqual({ database: 'app', requestedVersion: '02_b', clientSearchPath: undefined });
    expect(routeRequest([['user', 'u'], ['database', 'a@b@latest']])).toMatchObject({ database: 'a@b', requestedVersion: 'latest' });
    expect(routeRequest([['user', 'u@host']])).toEqual({ database: 'u@host', requestedVersion: undefined, clientSearchPath: undefined });
    // Nothing after the last '@' names no version: the whole name is the database.
    expect(routeRequest([['user', 'u'], ['database', 'shop@']])).toMatchObject({ database: 'shop@', requestedVersion: undefined });
    expect(routeRequest([['user', 'u'], ['database', 'shop@@latest']])).toMatchObject({ database: 'shop@', requestedVersion: 'latest' });
    expect(routeRequest([['user', 'u'], ['database', 'app'], ['options', '-c search_path=x']]).clientSearchPath).toBe('x');
    expect(routeRequest([['user', 'u'], ['database', 'app'], ['Search_Path', 'x']]).clientSearchPath).toBe('x');
    // A startup parameter is applied after `options`, so it wins.
    expect(routeRequest([['user', 'u'], ['database', 'app'], ['search_path', 'p'], ['options', '-c search_path=o']]).clientSearchPath).toBe('p');
  });

  it('routes to versions by alias, migration and schema name; lists versions when unknown', () => {
    const route = (database: string) => chooseRoute(routeRequest([['user', 'u'], ['database', database]]), versions, options);
    expect(route('app')).toMatchObject({ ok: true, searchPath: '"public_02_b", "public"' });
    expect(route('app@previous')).toMatchObject({ ok: true, version: { migration: '01_a' } });
    expect(route('app@public_01_a')).toMatchObject({ ok: true, version: { migration: '01_a' } });
    const unknown = route('app@03_c');
    expect(unknown).toMatchObject({ ok: false, error: { code: '3D000', severity: 'FATAL' } });
    if (!unknown.ok) expect(unknown.error.detail).toContain('02_b (public_02_b), 01_a (public_01_a)');
  });

  it('reads a search_path from options and splits it as PostgreSQL does', () => {
    expect(settingInOptions('-c search_path=public_01_a,public', 'search_path')).toBe('public_01_a,public');
    expect(settingInOptions('-csearch_path=a --work_mem=64MB', 'search_path')).toBe('a');
    expect(settingInOptions('--search-path=a\\,\\ b -c Search_Path=c', 'search_path')).toBe('c');
    expect(settingInOptions('-c search_path=a,\\ b', 'search_path')).toBe('a, b');
    expect(settingInOptions('-c work_mem=1MB', 'search_path')).toBeUndefined();
    expect(searchPathSchemas('"$user", Public_01_A , "Mixed ""Q"", x",public')).toEqual(['$user', 'public_01_a', 'Mixed "Q", x', 'public']);
    expect(versionOfSearchPath('"$user", pg_catalog, public_01_a, public', versions)).toMatchObject({ migration: '01_a' });
    expect(versionOfSearchPath('public, public_01_a', versions)).toBeUndefined();
  });

  it('counts a session under the version its own search_path starts with', () => {
    const route = (database: string, params: Array<[string, string]>) => chooseRoute(routeRequest([['user', 'u'], ['database', database], ...params]), versions, options);
    expect(route('app@latest', [['options', '-c search_path=public_01_a,public']])).toMatchObject({ ok: true, version: { migration: '01_a' }, searchPath: undefined });
    expect(route('app', [['search_path', '"public_01_a"']])).toMatchObject({ ok: true, version: { migration: '01_a' }, searchPath: undefined });
    // No live version first on the path: the version named in the database name.
    expect(route('app@latest', [['search_path', 'public, public_01_a']])).toMatchObject({ ok: true, version: { migration: '02_b' } });
    expect(route('app@01_a', [['search_path', 'public_00_gone']])).toMatchObject({ ok: true, version: { migration: '01_a' } });
  });

  it('uses the server defaults while no version exists, and leaves a client search_path alone', () => {
    expect(chooseRoute(routeRequest([['user', 'u'], ['database', 'app']]), [], options)).toEqual({ ok: true, version: undefined, searchPath: undefined });
    expect(chooseRoute(routeRequest([['user', 'u'], ['database', 'app@previous']]), [], options)).toMatchObject({ ok: false });
    const own = chooseRoute(routeRequest([['user', 'u'], ['database', 'app@01_a'], ['search_path', 'mine']]), versions, options);
    expect(own).toMatchObject({ ok: true, version: { migration: '01_a' }, searchPath: undefined });
  });
});

describe('flag parsing', () => {
  it('reads host:port and durations', () => {
    expect(parseHostPort('127.0.0.1:6432', '--listen')).toEqual({ host: '127.0.0.1', port: 6432 });
    expect(parseHostPort('[::1]:7000', '--listen')).toEqual({ host: '::1', port: 7000 });
    expect(parseHostPort(':6432', '--listen')).toEqual({ host: '0.0.0.0', port: 6432 });
    expect(() => parseHostPort('6432', '--listen')).toThrow(/HOST:PORT/);
    expect(parseDuration('30s', 'x')).toBe(30_000);
    expect(parseDuration('250ms', 'x')).toBe(250);
    expect(parseDuration('2m', 'x')).toBe(120_000);
    expect(parseDuration('5', 'x')).toBe(5_000);
    expect(() => parseDuration('soon', '--shutdown-grace')).toThrow(/--shutdown-grace must be a duration/);
    expect(['auto', 'native', 'node'].map((text) => parseForwarder(text, '--forwarder'))).toEqual(['auto', 'native', 'node']);
    expect(() => parseForwarder('epoll', '--forwarder')).toThrow('--forwarder must be one of auto, native, node, got "epoll"');
  });
});
