/**
 * The operator's HTTP endpoints, for any long-running tandem process:
 *   /healthz  the process answers (liveness)
 *   /readyz   200 when the process can do its job, 503 with the reason otherwise (readiness)
 *   /metrics  Prometheus text
 *   /status   a JSON document of the process's own choosing
 *   /         the status page (HTML) for a person, from the same facts as /status
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.js';

export interface Readiness {
  ready: boolean;
  /** Why, in a few words or fields; sent as JSON. */
  detail: Record<string, unknown>;
}

export interface HttpEndpoints {
  readiness(): Promise<Readiness>;
  metrics(): Promise<{ contentType: string; body: string }>;
  status(): Promise<unknown>;
  page(): Promise<string>;
}

export interface HttpServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(listen: { host: string; port: number }, endpoints: HttpEndpoints, logger: Logger): Promise<HttpServer> {
  const server = http.createServer((request, response) => {
    handle(request, response, endpoints).catch((error: Error) => {
      logger.warn({ path: request.url, err: error.message }, 'HTTP endpoint failed');
      if (!response.headersSent) send(response, 500, { error: error.message });
      else response.destroy();
    });
  });
  // Probes and scrapers keep connections alive; they must not hold shutdown up.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(request: http.IncomingMessage, response: http.ServerResponse, endpoints: HttpEndpoints): Promise<void> {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    send(response, 405, { error: 'only GET and HEAD are served' });
    return;
  }
  const path = new URL(request.url ?? '/', 'http://localhost').pathname;
  switch (path) {
    case '/healthz':
      send(response, 200, { status: 'ok' });
      return;
    case '/readyz': {
      const readiness = await endpoints.readiness();
      send(response, readiness.ready ? 200 : 503, { ready: readiness.ready, ...readiness.detail });
      return;
    }
    case '/metrics': {
      const { contentType, body } = await endpoints.metrics();
      response.writeHead(200, { 'content-type': contentType });
      response.end(body);
      return;
    }
    case '/status':
      send(response, 200, await endpoints.status());
      return;
    case '/': {
      const page = await endpoints.page();
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end(page);
      return;
    }
    default:
      send(response, 404, { error: `no endpoint ${path}; try /, /healthz, /readyz, /metrics or /status` });
  }
}

function send(response: http.ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  response.end(`${JSON.stringify(body, null, 2)}\n`);
}
