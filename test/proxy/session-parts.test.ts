/** The session's pure parts: the startup reader over Buffers, and why a session ended in words. */
import { describe, expect, it } from 'vitest';
import { FrameReader, MAX_STARTUP_PACKET_LENGTH, ProtocolError } from '../../src/proxy/protocol/frames.js';
import { encodeCancelRequest, encodeSSLRequest, encodeStartupMessage, PROTOCOL_3_0, TERMINATE, GSSENC_REQUEST_CODE, type ErrorFields } from '../../src/proxy/protocol/messages.js';
import { closeReasonOfNativeEnd, describeCloseReason, type CloseReason } from '../../src/proxy/session/close-reason.js';
import { readStartupRequest } from '../../src/proxy/session/startup.js';

function readerOf(...chunks: Buffer[]): FrameReader {
  const reader = new FrameReader(MAX_STARTUP_PACKET_LENGTH);
  for (const chunk of chunks) reader.push(chunk);
  return reader;
}

function gssEncRequest(): Buffer {
  const packet = Buffer.alloc(8);
  packet.writeInt32BE(8, 0);
  packet.writeInt32BE(GSSENC_REQUEST_CODE, 4);
  return packet;
}

describe('readStartupRequest', () => {
  it('reads a login, and waits while only part of it has arrived', () => {
    const packet = encodeStartupMessage(PROTOCOL_3_0, [['user', 'ada'], ['database', 'app@latest']]);
    const reader = readerOf(packet.subarray(0, 7));
    expect(readStartupRequest(reader)).toBeUndefined();
    reader.push(packet.subarray(7));
    // The body as sent (after the length word), for native logins to learn the packet by.
    expect(readStartupRequest(reader)).toEqual({ kind: 'login', protocol: PROTOCOL_3_0, params: [['user', 'ada'], ['database', 'app@latest']], body: packet.subarray(4) });
    expect(reader.pending).toBe(0);
  });

  it('takes a Terminate where the startup packet belongs for a client giving up, once all five bytes are in', () => {
    const reader = readerOf(TERMINATE.subarray(0, 3));
    expect(readStartupRequest(reader)).toBeUndefined();
    reader.push(TERMINATE.subarray(3));
    expect(readStartupRequest(reader)).toEqual({ kind: 'terminate' });
  });

  it('reads SSL and GSS encryption requests, then the login that follows a refusal', () => {
    expect(readStartupRequest(readerOf(encodeSSLRequest()))).toEqual({ kind: 'ssl' });
    const reader = readerOf(gssEncRequest(), encodeStartupMessage(PROTOCOL_3_0, [['user', 'ada']]));
    expect(readStartupRequest(reader)).toEqual({ kind: 'gssenc' });
    expect(readStartupRequest(reader)).toMatchObject({ kind: 'login', params: [['user', 'ada']] });
  });

  it('refuses bytes sent after an SSLRequest before the handshake (CVE-2021-23214)', () => {
    const reader = readerOf(encodeSSLRequest(), encodeStartupMessage(PROTOCOL_3_0, [['user', 'ada']]));
    expect(() => readStartupRequest(reader)).toThrow(ProtocolError);
  });

  it('reads a cancel request with its key', () => {
    const key = Buffer.from([0, 0, 0, 42, 1, 2, 3, 4]);
    expect(readStartupRequest(readerOf(encodeCancelRequest(key)))).toEqual({ kind: 'cancel', key });
  });
});

describe('describeCloseReason', () => {
  const fatal = (code: string, message: string): ErrorFields => ({ severity: 'FATAL', code, message });
  const cases: Array<[CloseReason, string]> = [
    [{ kind: 'client_closed' }, 'client disconnected'],
    [{ kind: 'client_socket_error', detail: 'read ECONNRESET' }, 'client socket error: read ECONNRESET'],
    [{ kind: 'client_terminated', before: 'startup_packet' }, 'client terminated before the startup packet'],
    [{ kind: 'client_terminated', before: 'login' }, 'client gave up during authentication'],
    [{ kind: 'cancel_request' }, 'cancel request'],
    [{ kind: 'tls_without_alpn' }, 'direct TLS without ALPN "postgresql"'],
    [{ kind: 'tls_handshake_timeout' }, 'login timeout during TLS handshake'],
    [{ kind: 'login_timeout', error: fatal('08006', 'client login timeout: the session was not established within 50 ms') }, '08006: client login timeout: the session was not established within 50 ms'],
    [{ kind: 'client_protocol_violation', error: fatal('0A000', 'unsupported frontend protocol 2.0: the proxy speaks protocol 3') }, '0A000: unsupported frontend protocol 2.0: the proxy speaks protocol 3'],
    [{ kind: 'refused', why: 'admission', error: fatal('53300', 'sorry, too many clients already') }, '53300: sorry, too many clients already'],
    [{ kind: 'retired_version' }, 'version retired'],
    [{ kind: 'shutdown', error: fatal('57P01', 'terminating connection: the tandem proxy is shutting down') }, 'proxy shutdown'],
    [{ kind: 'internal', error: fatal('XX000', 'internal error in the tandem proxy') }, 'XX000: internal error in the tandem proxy'],
    [{ kind: 'native_internal', detail: 'epoll_ctl: EBADF' }, 'internal error in the native forwarder: epoll_ctl: EBADF'],
    [{ kind: 'upstream_unreachable', error: fatal('08006', 'the tandem proxy could not connect to PostgreSQL') }, '08006: the tandem proxy could not connect to PostgreSQL'],
    [{ kind: 'server_refused', code: '28P01' }, 'server refused the session (28P01)'],
    [{ kind: 'server_socket_error', detail: 'read ECONNRESET' }, 'server connection error: read ECONNRESET'],
    [{ kind: 'server_closed' }, 'server closed the connection'],
    [{ kind: 'server_protocol_violation', detail: 'invalid length 2' }, 'server protocol error'],
    [{ kind: 'server_protocol_violation', detail: 'invalid length 2', error: fatal('08P01', 'protocol error from the server: invalid length 2') }, '08P01: protocol error from the server: invalid length 2'],
  ];
  it.each(cases)('words %j as the close line does', (reason, words) => {
    expect(describeCloseReason(reason)).toBe(words);
  });
});

describe('closeReasonOfNativeEnd', () => {
  it('says what the Node path says for the same facts', () => {
    const words = (reason: CloseReason | undefined) => (reason ? describeCloseReason(reason) : undefined);
    expect(words(closeReasonOfNativeEnd({ reason: 'client_protocol', detail: "invalid length 2 for message type 'Q'", explained: false }))).toBe(
      "08P01: invalid length 2 for message type 'Q'",
    );
    expect(closeReasonOfNativeEnd({ reason: 'server_closed', detail: '', explained: false })).toEqual({ kind: 'server_closed' });
    expect(closeReasonOfNativeEnd({ reason: 'server_closed', detail: 'read ECONNRESET', explained: true })).toEqual({ kind: 'server_socket_error', detail: 'read ECONNRESET' });
    expect(closeReasonOfNativeEnd({ reason: 'client_closed', detail: 'read ECONNRESET', explained: false })).toEqual({ kind: 'client_socket_error', detail: 'read ECONNRESET' });
    expect(closeReasonOfNativeEnd({ reason: 'server_protocol', detail: 'bad', explained: false })).toEqual({ kind: 'server_protocol_violation', detail: 'bad' });
    expect(closeReasonOfNativeEnd({ reason: 'retired', detail: '', explained: false })).toEqual({ kind: 'retired_version' });
    expect(closeReasonOfNativeEnd({ reason: 'internal', detail: 'EBADF', explained: false })).toEqual({ kind: 'native_internal', detail: 'EBADF' });
  });

  it('adds nothing for a plain hang-up or the end the proxy asked for, so the session keeps what it knew', () => {
    expect(closeReasonOfNativeEnd({ reason: 'client_closed', detail: '', explained: false })).toBeUndefined();
    expect(closeReasonOfNativeEnd({ reason: 'server_closed', detail: '', explained: true })).toBeUndefined();
    expect(closeReasonOfNativeEnd({ reason: 'terminated', detail: '', explained: false })).toBeUndefined();
  });
});
