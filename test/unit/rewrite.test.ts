import { describe, expect, it } from 'vitest';
import { renameColumnRefs } from '../../src/core/rewrite.js';

const mapping = new Map([
  ['email', '_tandem_new_email'],
  ['Date', 'shadow_date'],
  ['date', 'shadow_lower_date'],
]);

describe('renameColumnRefs', () => {
  it('renames bare and quoted references', () => {
    expect(renameColumnRefs('length(email) > 3 AND "email" <> \'\'', mapping)).toBe(
      'length("_tandem_new_email") > 3 AND "_tandem_new_email" <> \'\'',
    );
    expect(renameColumnRefs('EMAIL IS NOT NULL', mapping)).toBe('"_tandem_new_email" IS NOT NULL');
  });

  it('leaves strings, comments, types, functions and qualified names alone', () => {
    expect(renameColumnRefs(`email LIKE '%email%' -- email\n`, mapping)).toBe(`"_tandem_new_email" LIKE '%email%' -- email\n`);
    expect(renameColumnRefs(`date > '2020-01-01'::date AND date(created) > t.date`, mapping)).toBe(
      `"shadow_lower_date" > '2020-01-01'::date AND date(created) > t.date`,
    );
    expect(renameColumnRefs(`"Date" = $x$email$x$ /* email */`, mapping)).toBe(`"shadow_date" = $x$email$x$ /* email */`);
  });
});
