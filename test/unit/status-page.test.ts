import { describe, expect, it } from 'vitest';
import { renderStatusPage, type RolloutView } from '../../src/observe/status-page.js';

const generatedAt = new Date('2026-01-02T03:04:05Z');

const rollout: RolloutView = {
  schema: 'public',
  stateSchema: 'tandem',
  initialized: true,
  versions: [{ migration: '02_<b>', versionSchema: 'public_02_<b>', role: 'latest', status: 'active', clients: 3, lastQueryAt: generatedAt, proxies: [] }],
  proxies: { live: 1, stale: [] },
  active: {
    name: '02_<b>',
    status: 'starting',
    versionSchema: 'public_02_<b>',
    startedAt: generatedAt,
    startedBy: 'me',
    error: null,
    step: 1,
    steps: 3,
    phaseSteps: ['add column "<img src=x>"', 'backfill users', 'create version schema'],
    backfills: [{ table: 'users', rowsDone: 500, rowsTotal: 1000, rowsPerSecond: 100, status: 'throttled', secondsSinceProgress: null, throttle: { reason: 'replica_lag', detail: 'replica 10.0.0.2 is 12 s behind', seconds: 40 } }],
    completeWouldRun: [],
    completeCheck: null,
    run: { state: 'running', continueWith: '' },
  },
};

describe('status page', () => {
  it('escapes every fact it shows', () => {
    const html = renderStatusPage({ title: 'tandem start', generatedAt, refreshSeconds: 2, rollout });
    expect(html).not.toContain('<b>');
    expect(html).not.toContain('<img');
    expect(html).toContain('<code>public_02_&#60;b&#62;</code>');
    expect(html).toContain('<li class="done">✓ add column &#34;&#60;img src=x&#62;&#34;</li>');
  });

  it('marks the running step and shows a backfill with rate, ETA and why it is throttled', () => {
    const html = renderStatusPage({ title: 'tandem start', generatedAt, refreshSeconds: 2, rollout });
    expect(html).toContain('<li class="current">▶ backfill users</li>');
    expect(html).toContain('<li class="todo">· create version schema</li>');
    expect(html).toMatch(/<tr data-table="users">.*50%.*500\/1000.*100\/s<\/td><td>5s<\/td><td><span class="warn" title="replica 10.0.0.2 is 12 s behind">throttled: replica lag for 40s<\/span>/s);
  });

  it('prefers the running process\'s live backfill figures to the state row, and renders an unthrottled one as running', () => {
    const html = renderStatusPage({
      title: 'tandem start',
      generatedAt,
      refreshSeconds: 2,
      rollout,
      backfills: [{ table: 'users', method: 'primary key (id)', rowsDone: 900, rowsTotal: 1000, rowsPerSecond: 50, batches: 9, retries: 0, stalled: false, done: false, throttle: null, throttledSeconds: 0, replicaLagSeconds: null, adaptiveBatchSize: null }],
    });
    expect(html).toMatch(/<tr data-table="users">.*900\/1000.*50\/s<\/td><td>2s<\/td><td>running<\/td>/s);
  });

  it('shows every stacked migration, the newer ones waiting for the oldest to complete, live figures on the one being run', () => {
    const oldest = { ...rollout.active!, name: '02_users', versionSchema: 'public_02_users', status: 'active', step: 3, backfills: [], completeWouldRun: ['drop the previous version schema public_01'], completeCheck: { safe: true, clients: 0, details: [] }, run: null };
    const html = renderStatusPage({
      title: 'tandem start',
      generatedAt,
      refreshSeconds: 2,
      rollout: { ...rollout, active: oldest, activeMigrations: [oldest, { ...rollout.active!, name: '03_orders', versionSchema: 'public_03_orders' }] },
      backfills: [{ table: 'users', method: 'primary key (id)', rowsDone: 900, rowsTotal: 1000, rowsPerSecond: 50, batches: 9, retries: 0, stalled: false, done: false, throttle: null, throttledSeconds: 0, replicaLagSeconds: null, adaptiveBatchSize: null }],
    });
    expect(html).toMatch(/<section id="migration"><h2>Migration <code>02_users<\/code><\/h2>.*Complete would go ahead now: the old version has no clients/s);
    expect(html).toMatch(/<section id="migration-2"><h2>Migration <code>03_orders<\/code> \(stacked\)<\/h2>.*<tr data-table="users">.*900\/1000/s);
    expect(html.match(/data-table="users"/g)).toHaveLength(1);
  });
});
