/** Every rule's documented examples: the bad one is flagged by that rule, the good one is not. */
import { describe, expect, it } from 'vitest';
import { lintSql } from '../../src/lint/lint.js';
import { RULES } from '../../src/lint/rules/index.js';

describe('rule examples', () => {
  it('every rule has a distinct name, a summary, a why and a fix', () => {
    expect(new Set(RULES.map((r) => r.name)).size).toBe(RULES.length);
    for (const rule of RULES) {
      expect(rule.name).toMatch(/^[a-z]+(-[a-z]+)*$/);
      expect(rule.summary.length).toBeGreaterThan(5);
      for (const text of [rule.why, rule.fix]) expect(text.length).toBeGreaterThan(40);
    }
  });

  for (const rule of RULES) {
    const options = { pgVersion: rule.example.pgVersion ?? 14, assumeInTransaction: false, disabled: new Set<string>() };
    it(`${rule.name}: flags the bad example`, async () => {
      const findings = await lintSql(rule.example.bad, 'bad.sql', options);
      expect(findings.map((f) => f.rule)).toContain(rule.name);
    });
    it(`${rule.name}: passes the good example`, async () => {
      const findings = await lintSql(rule.example.good, 'good.sql', options);
      expect(findings.map((f) => f.rule)).not.toContain(rule.name);
    });
  }
});
