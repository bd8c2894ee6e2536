/** What complete rehearses before its first destructive step (no database needed). */
import { describe, expect, it } from 'vitest';
import { sqlStep, type Plan, type SqlStep } from '../../src/core/steps.js';
import { withRehearsal } from '../../src/core/rehearsal.js';

const plan = (complete: SqlStep[]): Plan => ({ start: [], complete, rollback: [], retires: null });

describe('the rehearsal before the first drop', () => {
  it('goes right before the first destructive step and rehearses tandem\'s own later steps, without scans or raw SQL', () => {
    const validate = sqlStep('validate constraint c', 'ALTER TABLE public.t VALIDATE CONSTRAINT c');
    const drop = sqlStep('drop column t.a', 'ALTER TABLE public.t DROP COLUMN IF EXISTS a', { destructive: true });
    const dropIndex = sqlStep('drop index i concurrently', 'DROP INDEX CONCURRENTLY IF EXISTS public.i', { transactional: false, destructive: true });
    const moved = sqlStep('validate moved foreign key f', 'ALTER TABLE public.u VALIDATE CONSTRAINT "f"');
    const raw = sqlStep('run sql (on complete)', 'DELETE FROM audit', { origin: { operation: 3, kind: 'sql' } });
    const rename = sqlStep('rename column t.b to c', 'ALTER TABLE public.t RENAME COLUMN b TO c');
    const result = withRehearsal(plan([validate, drop, dropIndex, moved, raw, rename]));
    expect(result.complete.map((s) => s.description)).toEqual([
      'validate constraint c',
      'rehearse the rest of complete (rolled back)',
      'drop column t.a',
      'drop index i concurrently',
      'validate moved foreign key f',
      'run sql (on complete)',
      'rename column t.b to c',
    ]);
    const rehearsal = (result.complete[1] as SqlStep).statements.join('\n');
    expect(rehearsal).toContain(`EXECUTE 'ALTER TABLE public.t DROP COLUMN IF EXISTS a';`);
    expect(rehearsal).toContain(`EXECUTE 'DROP INDEX IF EXISTS public.i';`);
    expect(rehearsal).toContain(`EXECUTE 'ALTER TABLE public.t RENAME COLUMN b TO c';`);
    expect(rehearsal).not.toContain('VALIDATE');
    expect(rehearsal).not.toContain('audit');
  });

  it('leaves a plan without destructive steps alone', () => {
    const only = plan([sqlStep('validate constraint c', 'ALTER TABLE public.t VALIDATE CONSTRAINT c')]);
    expect(withRehearsal(only)).toBe(only);
  });
});
