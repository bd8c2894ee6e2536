import { readFile } from 'node:fs/promises';
/** Every rule's documented examples: the bad one is flagged by that rule, the good one is not. */
import { describe, expect, it } from 'vitest';
import { lintSql } from '../../src/lint/lint.js';
import { RULES } from '../../src/lint/rules/index.js';
import { parseMigration } from '../../src/migration/load.js';

describe('rule documentation', () => {
  it('README.md documents every rule with its examples, word for word', async () => {
    const docs = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    for (const rule of RULES) {
      expect(docs).toContain(`### \`${rule.name}\``);
      expect(docs).toContain(rule.why);
      for (const example of [rule.example.bad, rule.example.good, rule.example.tandem]) if (example) expect(docs).toContain(example);
    }
  });
});

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
    it(`${rule.name}: has a safe alternative that holds`, async () => {
      expect(rule.example.good ?? rule.example.tandem).toBeDefined();
      if (rule.example.good !== undefined) {
        const findings = await lintSql(rule.example.good, 'good.sql', options);
        expect(findings.map((f) => f.rule)).not.toContain(rule.name);
      }
      // The tandem alternative is a migration tandem start accepts.
      if (rule.example.tandem !== undefined) parseMigration(rule.example.tandem, { file: `${rule.name}.yaml`, format: 'yaml' });
    });
  }
});
