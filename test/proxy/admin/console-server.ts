/**
 * A minimal PostgreSQL front end for the admin console tests: real clients (psql, node-postgres)
 * log in with trust authentication, and every simple Query is answered by answerAdminQuery over the
 * test's AdminSource. It stands in for the proxy's admin session, which wires the same functions:
 * the login check of users.ts, then the console.
 */
import net from 'node:net';
import { FrameReader, MAX_MESSAGE_LENGTH, MAX_STARTUP_PACKET_LENGTH } from '../../../src/proxy/protocol/frames.js';
import {
  MessageType,
  encodeErrorResponse,
  encodeMessage,
  encodeReadyForQuery,
  parseStartupPacket,
  type ErrorFields,
} from '../../../src/proxy/protocol/messages.js';
import { encodeAuthenticationOk } from '../../../src/proxy/auth/messages.js';
import { EXTENDED_PROTOCOL_REFUSAL, answerAdminQuery } from '../../../src/proxy/admin/console.js';
import type { AdminSource } from '../../../src/proxy/admin/source.js';
import { DEFAULT_ADMIN_DATABASE, adminLoginRefusal, type AdminUsers } from '../../../src/proxy/admin/users.js';

export interface ConsoleServer {
  port: number;
  close(): Promise<void>;
}

const PARAMETERS: Array<[string, string]> = [
  ['server_version', '17.0'],
  ['server_encoding', 'UTF8'],
  ['client_encoding', 'UTF8'],
  ['standard_conforming_strings', 'on'],
  ['DateStyle', 'ISO, MDY'],
  ['integer_datetimes', 'on'],
];

export async function startConsoleServer(source: AdminSource, users: AdminUsers): Promise<ConsoleServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    serve(socket, source, users);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function serve(socket: net.Socket, source: AdminSource, users: AdminUsers): void {
  const reader = new FrameReader(MAX_STARTUP_PACKET_LENGTH);
  let loggedIn = false;
  // Queries are answered one at a time, in the order they came, as a server does.
  let answering = Promise.resolve();
  const refuse = (fields: ErrorFields) => socket.end(encodeErrorResponse(fields));

  socket.on('data', (chunk: Buffer) => {
    reader.push(chunk);
    while (!loggedIn) {
      const body = reader.nextUntyped();
      if (!body) return;
      const packet = parseStartupPacket(body);
      // psql asks for TLS and GSS encryption first; this server speaks plain TCP only.
      if (packet.kind === 'ssl' || packet.kind === 'gssenc') socket.write('N');
      else if (packet.kind === 'cancel') socket.end();
      else {
        const params = new Map(packet.params);
        const user = params.get('user')!;
        const database = params.get('database') ?? user;
        if (database !== DEFAULT_ADMIN_DATABASE) return refuse({ severity: 'FATAL', code: '3D000', message: `database "${database}" does not exist` });
        if (!users.isAdmin(user)) return refuse(adminLoginRefusal(user, database));
        const backendKey = Buffer.alloc(8);
        backendKey.writeInt32BE(4242, 0);
        socket.write(
          Buffer.concat([
            encodeAuthenticationOk(),
            ...PARAMETERS.map(([name, value]) => encodeMessage(MessageType.ParameterStatus, Buffer.from(`${name}\0${value}\0`))),
            encodeMessage(MessageType.BackendKeyData, backendKey),
            encodeReadyForQuery('I'),
          ]),
        );
        loggedIn = true;
        reader.setMaxLength(MAX_MESSAGE_LENGTH);
      }
    }
    for (let frame = reader.nextTyped(); frame; frame = reader.nextTyped()) {
      if (frame.type === MessageType.Terminate) return void socket.end();
      if (frame.type !== MessageType.Query) {
        return refuse(EXTENDED_PROTOCOL_REFUSAL);
      }
      const sql = frame.body.toString('utf8', 0, frame.body.length - 1);
      answering = answering.then(async () => {
        const reply = await answerAdminQuery(sql, source);
        socket.write(Buffer.concat([reply, encodeReadyForQuery('I')]));
      });
    }
  });
}
