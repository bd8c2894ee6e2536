/** Startup-phase negotiation spoken byte by byte: GSSENC refusal, direct TLS, protocol 3.2, stray cancels. */
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { encodeCancelRequest, encodeStartupMessage, GSSENC_REQUEST_CODE, PROTOCOL_3_0 } from '../../src/proxy/protocol/messages.js';
import { usePostgres } from '../support/harness.js';
import { connectThrough, databaseOf, rawConnect, readUntilClose, selfSignedCertificate, startTestProxy } from './support.js';

/** The type bytes of the typed messages in `bytes`, in order. */
function messageTypes(bytes: Buffer): string[] {
  const types: string[] = [];
  for (let offset = 0; offset + 5 <= bytes.length; offset += 1 + bytes.readInt32BE(offset + 1)) types.push(String.fromCharCode(bytes[offset]!));
  return types;
}

/** Sends a StartupMessage then Terminate as soon as ReadyForQuery arrives; resolves with all bytes received. */
function loginAndQuit(socket: tls.TLSSocket | import('node:net').Socket, startup: Buffer): Promise<Buffer> {
  const received = readUntilClose(socket as import('node:net').Socket);
  let seen = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    if (seen.length >= 6 && seen[seen.length - 6] === 0x5a) socket.end(Buffer.from([0x58, 0, 0, 0, 4]));
  });
  socket.write(startup);
  return received;
}

describe('startup negotiation', () => {
  const pg = usePostgres();

  it('declines GSS encryption with N and continues with the startup that follows', async () => {
    const proxy = await startTestProxy(pg.url);
    const socket = await rawConnect(proxy.port);
    const gss = Buffer.alloc(8);
    gss.writeInt32BE(8, 0);
    gss.writeInt32BE(GSSENC_REQUEST_CODE, 4);
    const answer = new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.write(gss);
    expect((await answer).toString()).toBe('N');
    const bytes = await loginAndQuit(socket, encodeStartupMessage(PROTOCOL_3_0, [['user', 'postgres'], ['database', databaseOf(pg.url)]]));
    expect(messageTypes(bytes)).toContain('Z');
  });

  it('accepts direct TLS with ALPN "postgresql" (sslnegotiation=direct) and refuses it without ALPN', async () => {
    const certificate = selfSignedCertificate();
    const proxy = await startTestProxy(pg.url, { tlsCert: certificate.cert, tlsKey: certificate.key });
    const direct = tls.connect({ host: '127.0.0.1', port: proxy.port, ALPNProtocols: ['postgresql'], rejectUnauthorized: false });
    await new Promise((resolve) => direct.once('secureConnect', resolve));
    expect(direct.alpnProtocol).toBe('postgresql');
    const bytes = await loginAndQuit(direct, encodeStartupMessage(PROTOCOL_3_0, [['user', 'postgres'], ['database', databaseOf(pg.url)]]));
    expect(messageTypes(bytes)).toEqual(expect.arrayContaining(['R', 'S', 'K', 'Z']));

    const noAlpn = tls.connect({ host: '127.0.0.1', port: proxy.port, rejectUnauthorized: false });
    noAlpn.on('error', () => {});
    const closed = new Promise((resolve) => noAlpn.once('close', resolve));
    noAlpn.write(encodeStartupMessage(PROTOCOL_3_0, [['user', 'postgres']]));
    await closed;
  });

  it('passes protocol 3.2 through; the server negotiates down where it must', async () => {
    const proxy = await startTestProxy(pg.url);
    const socket = await rawConnect(proxy.port);
    const bytes = await loginAndQuit(socket, encodeStartupMessage(PROTOCOL_3_0 + 2, [['user', 'postgres'], ['database', databaseOf(pg.url)]]));
    const types = messageTypes(bytes);
    // PostgreSQL 18 speaks 3.2; older servers answer NegotiateProtocolVersion ('v') and go on in 3.0.
    expect(types[types.length - 1]).toBe('Z');
    if (pg.server.major < 18) expect(types).toContain('v');
  });

  it('drops a cancel request with an unknown key and keeps serving', async () => {
    const proxy = await startTestProxy(pg.url);
    const socket = await rawConnect(proxy.port);
    const closed = readUntilClose(socket);
    socket.write(encodeCancelRequest(Buffer.from([0, 0, 0, 1, 0, 0, 0, 2])));
    expect((await closed).length).toBe(0);
    const client = await connectThrough(proxy.url(databaseOf(pg.url)));
    expect((await client.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await client.end();
  });
});
