/**
 * The native hand-over reads a private part of Node's sockets (src/proxy/native.ts, idleDescriptor):
 * if a Node release moves it, this fails, instead of every session quietly forwarding in Node.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { idleDescriptor } from '../../src/proxy/native.js';

describe('the socket descriptor the native forwarder takes over', () => {
  const open: (net.Socket | net.Server)[] = [];
  afterEach(async () => {
    for (const thing of open.splice(0)) thing instanceof net.Server ? thing.close() : thing.destroy();
  });

  async function connectedPair(): Promise<{ client: net.Socket; accepted: net.Socket }> {
    const server = net.createServer();
    open.push(server);
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    const other = await accepted;
    open.push(client, other);
    return { client, accepted: other };
  }

  it('is reachable on an idle connected TCP socket, on both ends', async () => {
    const { client, accepted } = await connectedPair();
    for (const socket of [client, accepted]) {
      const fd = idleDescriptor(socket);
      expect(fd).toBeTypeOf('number');
      expect(fd!).toBeGreaterThan(2);
    }
  });

  it('is withheld while Node still holds bytes of the socket', async () => {
    const { client, accepted } = await connectedPair();
    accepted.pause();
    const arrived = new Promise((resolve) => accepted.once('readable', resolve));
    client.write('unread');
    await arrived;
    expect(idleDescriptor(accepted)).toBeUndefined();
    client.destroy();
    expect(idleDescriptor(client)).toBeUndefined();
  });
});
