/** Writes converted migrations as YAML (notes as comments next to their operation) or JSON (notes returned for stderr). */
import YAML from 'yaml';
import { describeLocation } from '../errors/index.js';
import { migrationDocument, type Conversion, type ConvertedMigration } from './convert.js';

export type OutputFormat = 'yaml' | 'json';

/** One migration as a YAML file; `header` lines go on top as comments. */
export function toYaml(migration: ConvertedMigration, header: string[] = []): string {
  // No anchors and aliases: a migration is read by people, and equal parts should look equal.
  const document = new YAML.Document(migrationDocument(migration), { aliasDuplicateObjects: false });
  if (header.length) document.commentBefore = header.map((line) => ` ${line}`).join('\n');
  const operations = document.get('operations') as YAML.YAMLSeq;
  migration.operations.forEach((converted, index) => {
    if (!converted.notes.length) return;
    const item = operations.items[index] as YAML.Node;
    item.commentBefore = converted.notes.map((note) => ` ${note.level === 'review' ? 'REVIEW' : 'note'}: ${note.text}`).join('\n');
  });
  return document.toString({ lineWidth: 0 });
}

export function toJson(migration: ConvertedMigration): string {
  return `${JSON.stringify(migrationDocument(migration), null, 2)}\n`;
}

/** How many REVIEW notes a conversion has: places a person must check before tandem start. */
export function reviewCount(conversion: Conversion): number {
  return conversion.migrations.flatMap((m) => m.operations.flatMap((op) => op.notes)).filter((note) => note.level === 'review').length;
}

/** What the first migration's comments say about the whole conversion. */
export function conversionHeader(conversion: Conversion, source: string): string[] {
  const reviews = reviewCount(conversion);
  const header = [`Converted by tandem convert from ${source}.`];
  if (conversion.migrations.length > 1) {
    header.push(
      `The SQL needs ${conversion.migrations.length} migrations, to run in order (${conversion.migrations.map((m) => m.name).join(', ')}): ` +
        'raw SQL that runs at start must be alone in its migration.',
    );
  }
  for (const migration of conversion.migrations) {
    if (migration.versionSchema) header.push(versionSchemaNote(migration));
  }
  if (reviews) header.push(`${reviews} REVIEW note${reviews === 1 ? '' : 's'} below: check each before running tandem start.`);
  for (const skipped of conversion.skipped) header.push(`Skipped ${skipped}.`);
  return header;
}

/** Every migration of a conversion as one text: a single document, or a YAML stream / JSON array when there are several. */
export function renderConversion(conversion: Conversion, format: OutputFormat, source: string): string {
  const { migrations } = conversion;
  if (format === 'json') {
    return migrations.length === 1 ? toJson(migrations[0]!) : `${JSON.stringify(migrations.map(migrationDocument), null, 2)}\n`;
  }
  return migrations.map((migration, index) => toYaml(migration, index === 0 ? conversionHeader(conversion, source) : [])).join('---\n');
}

/** Why a converted migration sets `version_schema`. */
export function versionSchemaNote(migration: ConvertedMigration): string {
  return `${migration.name}: version_schema is ${migration.versionSchema}, as <schema>_${migration.name} would pass PostgreSQL's 63-byte limit for names`;
}

/** The notes as lines for stderr, for output that cannot carry comments. */
export function noteLines(conversion: Conversion, file: string): string[] {
  const lines = conversion.skipped.map((skipped) => `${file}: skipped ${skipped}`);
  for (const migration of conversion.migrations) if (migration.versionSchema) lines.push(`${file}: ${versionSchemaNote(migration)}`);
  for (const migration of conversion.migrations) {
    migration.operations.forEach((converted, index) => {
      for (const note of converted.notes) {
        const where = describeLocation({ file: migration.name, operation: index, kind: converted.kind });
        lines.push(`${where}: ${note.level === 'review' ? 'REVIEW' : 'note'}: ${note.text}`);
      }
    });
  }
  return lines;
}
