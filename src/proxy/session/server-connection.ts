/**
 * The server's side of a session before authentication: a connection to PostgreSQL that has been
 * sent the client's (routed) startup packet: one per session with --pool-mode none (pooled sessions
 * borrow theirs from pool/, already logged in).
 */
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ProxyMetrics } from '../metrics.js';
import { encodeStartupMessage, type StartupParams } from '../protocol/messages.js';
import { describeTarget, openUpstream, type UpstreamTarget } from '../upstream.js';
import type { ToldCloseReason } from './close-reason.js';

export async function connectServer(target: UpstreamTarget, metrics: ProxyMetrics): Promise<{ ok: true; server: net.Socket } | { ok: false; reason: ToldCloseReason }> {
  const started = performance.now();
  let server: net.Socket;
  try {
    server = await openUpstream(target);
  } catch (error) {
    return {
      ok: false,
      reason: {
        kind: 'upstream_unreachable',
        error: {
          severity: 'FATAL',
          code: '08006',
          message: `the tandem proxy could not connect to PostgreSQL at ${describeTarget(target)}: ${(error as Error).message}`,
          hint: 'The server may be down or restarting; try again shortly.',
        },
      },
    };
  }
  metrics.upstreamConnected((performance.now() - started) / 1000);
  return { ok: true, server };
}

export function sendStartup(server: net.Socket, protocol: number, params: StartupParams): void {
  // TLS negotiation may have paused it; a 'data' listener alone does not undo an explicit pause.
  server.resume();
  server.write(encodeStartupMessage(protocol, params));
}
