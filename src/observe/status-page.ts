/**
 * The status page served at `/` by the proxy's --http and the migration commands' --metrics-listen:
 * one HTML document rendered on the server from the same facts as `/status`, so that it reads
 * without JavaScript; a small inline script only swaps in a fresh copy every few seconds.
 *
 * The shapes below are what the page reads, written out here because observe may not import the
 * engine or the state layer: `tandem status --json`'s document fits `RolloutView` as it is.
 */
import { duration, type BackfillProgress } from './progress.js';

type When = Date | string | null;

export interface RolloutView {
  schema: string;
  stateSchema: string;
  initialized: boolean;
  versions: {
    migration: string;
    versionSchema: string;
    role: string;
    status: string;
    /** Across every proxy with a fresh heartbeat; null when none reports the version. */
    clients: number | null;
    lastQueryAt: When;
    proxies: { proxyId: string; clients: number }[];
  }[];
  proxies: { live: number; stale: { hostname: string; pid: number; listen: string; heartbeatAt: When }[] };
  /** The oldest migration in flight; `activeMigrations` has them all, oldest first, when several are stacked. */
  active: ActiveView | null;
  activeMigrations?: ActiveView[];
}

interface ActiveView {
  name: string;
  status: string;
  versionSchema: string;
  startedAt: When;
  startedBy: string;
  error: string | null;
  step: number;
  steps: number;
  phaseSteps: string[];
  backfills: BackfillRow[];
  completeWouldRun: string[];
  completeCheck: { safe: boolean; clients: number | null; details: string[] } | null;
  run: { state: string; continueWith: string } | null;
}

/** A backfill as the state schema records it (`tandem status --json`): `throttle` is set while it is held back. */
interface BackfillRow {
  table: string;
  rowsDone: number;
  rowsTotal: number | null;
  rowsPerSecond: number | null;
  status: string;
  secondsSinceProgress: number | null;
  throttle?: { reason: string; detail: string; seconds: number } | null;
}

/** This proxy's own view: queries per second are counted here, not in the heartbeats. */
export interface ProxyView {
  proxyId: string;
  listen: string;
  draining: boolean;
  clients: number;
  databases: Record<string, { clients: Record<string, { clients: number; queriesPerSecond: number | null }> }>;
}

export interface StatusPage {
  /** Who serves the page, e.g. `proxy host:1234:ab12cd` or `tandem start`. */
  title: string;
  generatedAt: Date;
  refreshSeconds: number;
  /** Read from the state schema; an error when it could not be read. */
  rollout: RolloutView | { error: string } | null;
  proxy?: ProxyView;
  /** Backfills this process runs now, with their live rate. */
  backfills?: BackfillProgress[];
}

/** Text that is already HTML; everything else that reaches `html` is escaped. */
class Html {
  constructor(readonly text: string) {}
}

type Part = Html | string | number | null | undefined | readonly Part[];

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function render(part: Part): string {
  if (part instanceof Html) return part.text;
  if (Array.isArray(part)) return part.map(render).join('');
  if (part === null || part === undefined) return '';
  return escapeHtml(String(part));
}

function html(strings: TemplateStringsArray, ...parts: Part[]): Html {
  return new Html(strings.reduce((out, text, i) => out + text + (i < parts.length ? render(parts[i]) : ''), ''));
}

export function renderStatusPage(page: StatusPage): string {
  const rollout = page.rollout && 'error' in page.rollout ? null : page.rollout;
  const failure = page.rollout && 'error' in page.rollout ? page.rollout.error : null;
  const body = html`<header><h1>tandem</h1><p>${page.title} · ${rollout ? html`schema <code>${rollout.schema}</code> · ` : ''}as of <time id="generated" datetime="${page.generatedAt.toISOString()}">${page.generatedAt.toISOString()}</time></p></header>
${failure ? html`<p class="bad" id="rollout-error">Cannot read the state schema: ${failure}</p>` : ''}
${rollout && !rollout.initialized ? html`<p>tandem has not been used on schema <code>${rollout.schema}</code> yet (no state schema <code>${rollout.stateSchema}</code>).</p>` : ''}
${rollout?.initialized ? versionsSection(rollout, page.proxy) : page.proxy ? proxyOnlySection(page.proxy) : ''}
${rollout?.initialized ? migrationSection(rollout, page.backfills ?? []) : page.backfills?.length ? backfillSection(page.backfills.map(fromProgress)) : ''}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tandem · ${escapeHtml(page.title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="${page.refreshSeconds}"></noscript>
<style>${STYLE}</style></head>
<body><main id="page">${body.text}</main>
<script>${refreshScript(page.refreshSeconds)}</script>
</body></html>
`;
}

function versionsSection(rollout: RolloutView, proxy: ProxyView | undefined): Html {
  const local = proxy ? Object.values(proxy.databases) : [];
  const rate = (version: string): number | null => {
    const rates = local.map((db) => db.clients[version]?.queriesPerSecond).filter((r): r is number => typeof r === 'number');
    return rates.length ? rates.reduce((a, b) => a + b, 0) : null;
  };
  const rows = rollout.versions.map(
    (v) => html`<tr data-version="${v.versionSchema}"><td><code>${v.versionSchema}</code></td><td>${v.role}</td><td>${v.status}</td>
<td class="num" data-clients>${v.clients ?? '–'}</td>${proxy ? html`<td class="num">${perSecond(rate(v.versionSchema))}</td>` : ''}<td>${when(v.lastQueryAt)}</td></tr>`,
  );
  const stale = rollout.proxies.stale;
  return html`<section id="versions"><h2>Versions</h2>
${rows.length ? html`<table><thead><tr><th>version schema</th><th>role</th><th>status</th><th>clients (all proxies)</th>${proxy ? html`<th>queries/s (this proxy)</th>` : ''}<th>last query</th></tr></thead><tbody>${rows}</tbody></table>` : html`<p>No version exists yet.</p>`}
<p>${rollout.proxies.live} live ${rollout.proxies.live === 1 ? 'proxy reports' : 'proxies report'} clients${stale.length ? html`; <span class="warn">${stale.length} gone quiet: ${stale.map((s) => `${s.hostname}:${s.pid} (${s.listen}, last heartbeat ${when(s.heartbeatAt)})`).join(', ')}</span>` : ''}.${proxy?.draining ? html` <span class="warn">This proxy is draining.</span>` : ''}</p></section>`;
}

/** Without the state schema a proxy still shows what it sees itself. */
function proxyOnlySection(proxy: ProxyView): Html {
  const rows = Object.entries(proxy.databases).flatMap(([database, entry]) =>
    Object.entries(entry.clients).map(
      ([version, usage]) => html`<tr><td>${database}</td><td><code>${version || '(server defaults)'}</code></td><td class="num">${usage.clients}</td><td class="num">${perSecond(usage.queriesPerSecond)}</td></tr>`,
    ),
  );
  return html`<section id="versions"><h2>Clients of this proxy</h2>${rows.length ? html`<table><thead><tr><th>database</th><th>version</th><th>clients</th><th>queries/s</th></tr></thead><tbody>${rows}</tbody></table>` : html`<p>No client is connected.</p>`}</section>`;
}

function migrationSection(rollout: RolloutView, live: NonNullable<StatusPage['backfills']>): Html {
  const all = rollout.activeMigrations ?? (rollout.active ? [rollout.active] : []);
  if (!all.length) return html`<section id="migration"><h2>Migration</h2><p>No migration is active: the latest version is complete.</p></section>`;
  // The running process reports live progress for the migration it runs: the one not simply active.
  const runningOne = all.find((m) => m.status !== 'active') ?? all[0]!;
  const sections = all.map((active, i) => oneMigration(active, i === 0 ? undefined : all[0]!.name, i === 0 ? 'migration' : `migration-${i + 1}`, active === runningOne ? live : []));
  return html`${sections}`;
}

/** One migration in flight; `waitsFor`: the older one complete works on first, when it is stacked. */
function oneMigration(active: ActiveView, waitsFor: string | undefined, id: string, live: NonNullable<StatusPage['backfills']>): Html {
  const running = active.status !== 'active';
  const steps = active.phaseSteps.map((description, i) => {
    const state = i < active.step ? 'done' : running && i === active.step ? 'current' : 'todo';
    return html`<li class="${state}">${state === 'done' ? '✓' : state === 'current' ? '▶' : '·'} ${description}</li>`;
  });
  // The process that runs the backfill knows its rate now; the state row is as of its last batch.
  const byTable = new Map(live.map((p) => [p.table, fromProgress(p)]));
  const backfills = [...active.backfills.map((b) => byTable.get(b.table) ?? b), ...[...byTable.values()].filter((b) => !active.backfills.some((r) => r.table === b.table))];
  return html`<section id="${id}"><h2>Migration <code>${active.name}</code>${waitsFor ? html` (stacked)` : ''}</h2>
<p>${active.status}${running ? html` · ${active.step} of ${active.steps} steps done` : ''} · version schema <code>${active.versionSchema}</code> · started ${when(active.startedAt)} by ${active.startedBy}</p>
${active.run?.state === 'interrupted' ? html`<p class="bad">Interrupted: no tandem process is running it; ${active.run.continueWith}</p>` : ''}
${active.error ? html`<p class="bad">Last error: ${active.error.split('\n')[0]}</p>` : ''}
<ol id="${id === 'migration' ? 'steps' : `${id}-steps`}">${steps}</ol>
${backfills.length ? backfillSection(backfills, id === 'migration' ? 'backfills' : `${id}-backfills`) : ''}
${active.status !== 'active' ? '' : waitsFor ? html`<p><code>tandem complete</code> completes <code>${waitsFor}</code> first.</p>` : completeSection(active)}</section>`;
}

function backfillSection(rows: BackfillRow[], id = 'backfills'): Html {
  const body = rows.map((b) => {
    const total = b.rowsTotal && b.rowsTotal > 0 ? Math.max(b.rowsTotal, b.rowsDone) : null;
    const done = b.status === 'done';
    const fraction = done ? 1 : total ? b.rowsDone / total : 0;
    const eta = done ? 'done' : total && b.rowsPerSecond ? duration(Math.max(0, (total - b.rowsDone) / b.rowsPerSecond)) : '–';
    const state = b.throttle ? html`<span class="warn" title="${b.throttle.detail}">throttled: ${b.throttle.reason.replaceAll('_', ' ')} for ${duration(b.throttle.seconds)}</span>` : b.status === 'stalled' ? html`<span class="bad">stalled${b.secondsSinceProgress !== null ? ` ${b.secondsSinceProgress}s` : ''}</span>` : b.status;
    return html`<tr data-table="${b.table}"><td><code>${b.table}</code></td><td><progress max="1" value="${fraction.toFixed(3)}"></progress> ${Math.round(fraction * 100)}%</td>
<td class="num">${b.rowsDone}/${total ?? '?'}</td><td class="num">${b.rowsPerSecond ? `${Math.round(b.rowsPerSecond)}/s` : '–'}</td><td>${eta}</td><td>${state}</td></tr>`;
  });
  return html`<h3>Backfills</h3><table id="${id}"><thead><tr><th>table</th><th>progress</th><th>rows</th><th>rate</th><th>ETA</th><th>state</th></tr></thead><tbody>${body}</tbody></table>`;
}

function completeSection(active: ActiveView): Html {
  const check = active.completeCheck;
  const verdict = !check
    ? html`<p>Nothing to wait for: complete retires no version in use.</p>`
    : check.safe
      ? html`<p class="ok">Complete would go ahead now${check.clients === 0 ? ': the old version has no clients' : ''}.</p>`
      : html`<p class="warn">Complete would wait now: ${check.details.join('; ')}</p>`;
  return html`<section id="complete"><h3>What <code>tandem complete</code> would do now</h3>${verdict}<ol>${active.completeWouldRun.map((s) => html`<li>${s}</li>`)}</ol></section>`;
}

function fromProgress(p: NonNullable<StatusPage['backfills']>[number]): BackfillRow {
  return {
    table: p.table,
    rowsDone: p.rowsDone,
    rowsTotal: p.rowsTotal,
    rowsPerSecond: p.rowsPerSecond,
    status: p.done ? 'done' : p.stalled ? 'stalled' : 'running',
    secondsSinceProgress: null,
    throttle: p.throttle,
  };
}

function perSecond(rate: number | null): string {
  return rate === null ? '–' : rate < 10 ? rate.toFixed(1) : String(Math.round(rate));
}

function when(value: When): string {
  if (value === null) return '–';
  return (typeof value === 'string' ? value : value.toISOString()).replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/**
 * Fetches the page again and swaps the main element's content, so the reader keeps their place; on
 * failure it marks the page stale and tries again. data-refreshes counts the swaps, to tell a live
 * page from a frozen one.
 */
function refreshScript(seconds: number): string {
  return `(function () {
  var page = document.getElementById('page');
  function again() {
    fetch(location.pathname, { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, 'text/html').getElementById('page');
        if (!fresh) throw new Error('not a status page');
        page.innerHTML = fresh.innerHTML;
        page.removeAttribute('data-stale');
        page.setAttribute('data-refreshes', String(Number(page.getAttribute('data-refreshes') || 0) + 1));
      })
      .catch(function (e) { page.setAttribute('data-stale', String(e && e.message)); })
      .then(function () { setTimeout(again, ${seconds * 1000}); });
  }
  setTimeout(again, ${seconds * 1000});
})();`;
}

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0}h2{font-size:1.15em;margin-top:1.5em}h3{font-size:1em}
table{border-collapse:collapse}th,td{padding:.25em .75em;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.95em}
li.done{color:#2a7}li.current{font-weight:bold}li.todo{color:#777}
.ok{color:#2a7}.warn{color:#b70}.bad{color:#c22}[data-stale] header::after{content:" (not refreshing: " attr(data-stale) ")";color:#c22}
progress{width:8em}`;
