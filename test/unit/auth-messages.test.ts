import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  authenticationData,
  encodeAuthenticationMD5Password,
  encodeAuthenticationOk,
  encodeAuthenticationSASLContinue,
  encodeAuthenticationSASLFinal,
  encodePasswordMessage,
  encodeSASLInitialResponse,
  encodeSASLResponse,
  parsePasswordMessage,
  parseSASLInitialResponseData,
} from '../../src/proxy/auth/messages.js';
import { loadUserlist, UserlistError } from '../../src/proxy/auth/userlist.js';
import { FrameReader } from '../../src/proxy/protocol/frames.js';
import { AuthCode, MessageType, parseAuthRequest, parseSASLInitialResponse } from '../../src/proxy/protocol/messages.js';

function frameOf(bytes: Buffer) {
  const reader = new FrameReader(1 << 16);
  reader.push(bytes);
  const frame = reader.nextTyped()!;
  expect(reader.pending).toBe(0);
  return frame;
}

describe('authentication message codecs', () => {
  it('writes the server\'s requests so the relay\'s parser reads them back', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    const cases: Array<[Buffer, number, Buffer]> = [
      [encodeAuthenticationOk(), AuthCode.Ok, Buffer.alloc(0)],
      [encodeAuthenticationMD5Password(salt), AuthCode.MD5Password, salt],
      [encodeAuthenticationSASLContinue(Buffer.from('r=abc,s=c2FsdA==,i=4096')), AuthCode.SASLContinue, Buffer.from('r=abc,s=c2FsdA==,i=4096')],
      [encodeAuthenticationSASLFinal(Buffer.from('v=sig')), AuthCode.SASLFinal, Buffer.from('v=sig')],
    ];
    for (const [bytes, code, data] of cases) {
      const frame = frameOf(bytes);
      expect(frame.type).toBe(MessageType.Authentication);
      expect(parseAuthRequest(frame.body).code).toBe(code);
      expect(authenticationData(frame.body)).toEqual(data);
    }
  });

  it('reads and writes the client\'s answers', () => {
    expect(parsePasswordMessage(frameOf(encodePasswordMessage('md5abc')).body)).toBe('md5abc');
    expect(() => parsePasswordMessage(Buffer.from('no terminator'))).toThrow(/invalid password packet size/);

    const initial = frameOf(encodeSASLInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=abc')));
    expect(parseSASLInitialResponseData(initial.body)).toEqual({ mechanism: 'SCRAM-SHA-256', data: Buffer.from('n,,n=,r=abc') });
    expect(parseSASLInitialResponse(initial.body)).toEqual({ mechanism: 'SCRAM-SHA-256', channelBindingFlag: 'n' });
    // No initial response: length -1, as the protocol allows.
    const none = Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), Buffer.from([0xff, 0xff, 0xff, 0xff])]);
    expect(parseSASLInitialResponseData(none)).toEqual({ mechanism: 'SCRAM-SHA-256', data: Buffer.alloc(0) });
    const lying = Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), Buffer.from([0, 0, 0, 9]), Buffer.from('abc')]);
    expect(() => parseSASLInitialResponseData(lying)).toThrow(/length does not match/);
    expect(frameOf(encodeSASLResponse(Buffer.from('c=biws'))).body.toString()).toBe('c=biws');
  });

  it('loads an auth file from disk, naming it in errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-userlist-'));
    const good = join(dir, 'userlist.txt');
    writeFileSync(good, '"alice" "secret"\n');
    expect((await loadUserlist(good)).get('alice')).toEqual({ kind: 'plain', password: 'secret' });
    const bad = join(dir, 'bad.txt');
    writeFileSync(bad, '"alice" "secret"\r\n\r\nbob\r\n');
    await expect(loadUserlist(bad)).rejects.toEqual(new UserlistError(bad, 3, 'expected the user name in double quotes'));
  });
});
