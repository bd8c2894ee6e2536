/** examples/monitoring: the alert rules and the Grafana dashboard use only metrics tandem exports. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Histogram } from 'prom-client';
import { parse } from 'yaml';
import { createBackfillMetrics } from '../../src/observe/backfill-metrics.js';
import { ProxyMetrics } from '../../src/proxy/metrics.js';
import { UsageLedger } from '../../src/proxy/usage.js';

const folder = fileURLToPath(new URL('../../examples/monitoring/', import.meta.url));
const rulesFile = `${folder}tandem-rules.yml`;

const promtoolMissing = spawnSync('promtool', ['--version']).status === 0 ? undefined : 'promtool is not installed (Debian: apt-get install -y prometheus)';
if (promtoolMissing) console.log(`skipping the promtool check of the alert rules: ${promtoolMissing}`);

/** Every series name the proxy and the migration commands expose, histograms with their suffixes. */
async function exportedNames(): Promise<Set<string>> {
  const proxy = new ProxyMetrics(new UsageLedger(), { versions: () => [], ready: async () => true });
  const names = new Set<string>();
  for (const registry of [proxy.registry, createBackfillMetrics().registry]) {
    for (const metric of await registry.getMetricsAsJSON()) {
      names.add(metric.name);
      if (registry.getSingleMetric(metric.name) instanceof Histogram) for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
    }
  }
  return names;
}

/** The tandem metric names a PromQL expression reads. */
function namesIn(expr: string): string[] {
  return expr.match(/\btandem_[a-z0-9_]+/g) ?? [];
}

function dashboardExprs(): string[] {
  const found: string[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === 'expr' && typeof value === 'string') found.push(value);
        else walk(value);
      }
    }
  };
  walk(JSON.parse(readFileSync(`${folder}tandem-dashboard.json`, 'utf8')));
  return found;
}

interface Rule {
  alert: string;
  expr: string;
}

function rules(): Rule[] {
  const file = parse(readFileSync(rulesFile, 'utf8')) as { groups: { rules: Rule[] }[] };
  return file.groups.flatMap((g) => g.rules);
}

describe('examples/monitoring', () => {
  it('the dashboard and the alert rules read only metrics the code exports', async () => {
    const exported = await exportedNames();
    const used = [...dashboardExprs(), ...rules().map((r) => r.expr)].flatMap((expr) => namesIn(expr).map((name) => ({ name, expr })));
    expect(used.length).toBeGreaterThan(20);
    expect(used.filter((u) => !exported.has(u.name))).toEqual([]);
  });

  it('has the alerts a rollout needs', () => {
    expect(rules().map((r) => r.alert)).toEqual(['TandemBackfillStalled', 'TandemBackfillThrottled', 'TandemOldVersionStillInUse', 'TandemProxyNotReady', 'TandemProxyAuthFailuresSpike']);
  });

  it.skipIf(promtoolMissing)('the rule file passes promtool check rules', () => {
    const check = spawnSync('promtool', ['check', 'rules', rulesFile], { encoding: 'utf8' });
    expect(check.stdout + check.stderr).toContain('SUCCESS: 5 rules found');
    expect(check.status).toBe(0);
  });
});
