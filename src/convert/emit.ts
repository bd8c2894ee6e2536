/** Writes a conversion as YAML (notes as comments next to their operation) or JSON (notes returned for stderr). */
import YAML from 'yaml';
import { describeLocation } from '../errors.js';
import { migrationDocument, type Conversion } from './convert.js';

export type OutputFormat = 'yaml' | 'json';

export function toYaml(conversion: Conversion, source: string): string {
  // No anchors and aliases: a migration is read by people, and equal parts should look equal.
  const document = new YAML.Document(migrationDocument(conversion), { aliasDuplicateObjects: false });
  const reviews = conversion.operations.reduce((n, op) => n + op.notes.filter((note) => note.level === 'review').length, 0);
  const header = [`Converted by tandem convert from ${source}.`];
  if (reviews) header.push(`${reviews} REVIEW note${reviews === 1 ? '' : 's'} below: check each before running tandem start.`);
  for (const skipped of conversion.skipped) header.push(`Skipped ${skipped}.`);
  document.commentBefore = header.map((line) => ` ${line}`).join('\n');
  const operations = document.get('operations') as YAML.YAMLSeq;
  conversion.operations.forEach((converted, index) => {
    if (!converted.notes.length) return;
    const item = operations.items[index] as YAML.Node;
    item.commentBefore = converted.notes.map((note) => ` ${note.level === 'review' ? 'REVIEW' : 'note'}: ${note.text}`).join('\n');
  });
  return document.toString({ lineWidth: 0 });
}

export function toJson(conversion: Conversion): string {
  return `${JSON.stringify(migrationDocument(conversion), null, 2)}\n`;
}

/** The notes as lines for stderr, for output formats that cannot carry comments. */
export function noteLines(conversion: Conversion, file: string): string[] {
  const lines = conversion.skipped.map((skipped) => `${file}: skipped ${skipped}`);
  conversion.operations.forEach((converted, index) => {
    for (const note of converted.notes) {
      const where = describeLocation({ file, operation: index, kind: converted.kind });
      lines.push(`${where}: ${note.level === 'review' ? 'REVIEW' : 'note'}: ${note.text}`);
    }
  });
  return lines;
}
