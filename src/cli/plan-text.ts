import type { Plan, Step } from '../core/steps.js';

/** The plan as SQL comments and statements, for `start --dry-run`. */
export function describePlan(name: string, versionSchema: string, plan: Plan): string {
  const lines = [`-- migration ${name} (version schema ${versionSchema})`];
  for (const phase of ['start', 'complete', 'rollback'] as const) {
    lines.push('', `-- ${phase}: ${plan[phase].length} step${plan[phase].length === 1 ? '' : 's'}`);
    plan[phase].forEach((step, i) => lines.push(...stepText(step, i)));
  }
  return `${lines.join('\n')}\n`;
}

function stepText(step: Step, index: number): string[] {
  const header = `-- ${index + 1}. ${step.description}`;
  switch (step.kind) {
    case 'sql':
      return [header + (step.transactional ? '' : ' (outside a transaction)'), ...step.statements.map((s) => `${s};`)];
    case 'backfill':
      return [`${header}: UPDATE … SET ${step.touchColumn} = ${step.touchColumn} in batches`];
    case 'live_views':
      return [`${header}: views over the tables as they are after the SQL above`];
    case 'await_proxies':
      return [`${header}: until each live proxy has sent a heartbeat since`];
  }
}
