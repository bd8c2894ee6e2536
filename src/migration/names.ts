/**
 * What a migration name and a `version_schema` may contain. pgroll takes both as they are (it
 * quotes every identifier) and only limits the version schema to PostgreSQL's 63 bytes, which the
 * engine checks once it knows `--schema`. tandem accepts every name pgroll users write, except:
 * - control characters (U+0000–U+001F, U+007F–U+009F) and the Unicode line and paragraph
 *   separators: a name is printed in logs, errors, `tandem status` and `tandem latest`, which
 *   scripts read line by line, and PostgreSQL refuses U+0000 in text outright;
 * - `@`: a client names its version in the database name as `app@VERSION` (DESIGN.md), split at
 *   the last `@`, so a version whose name held one could never be reached through the proxy.
 */

export interface NameProblem {
  /** The offending character, described: `U+000A (line feed)`, `"@"`. */
  character: string;
  /** Its position in the name, counted in characters from 1. */
  position: number;
  why: string;
}

const CONTROL_NAMES: Record<number, string> = {
  0x00: 'NUL',
  0x09: 'tab',
  0x0a: 'line feed',
  0x0b: 'vertical tab',
  0x0c: 'form feed',
  0x0d: 'carriage return',
  0x1b: 'escape',
  0x7f: 'delete',
  0x85: 'next line',
  0x2028: 'line separator',
  0x2029: 'paragraph separator',
};

function isControl(code: number): boolean {
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029;
}

/** The first character a migration name or version schema may not contain, or undefined when it is fine. */
export function nameProblem(name: string): NameProblem | undefined {
  let position = 0;
  for (const character of name) {
    position++;
    const code = character.codePointAt(0)!;
    if (isControl(code)) {
      const hex = code.toString(16).toUpperCase().padStart(4, '0');
      const label = CONTROL_NAMES[code] ?? 'a control character';
      return { character: `U+${hex} (${label})`, position, why: 'control characters and line breaks are not allowed' };
    }
    if (character === '@') {
      return { character: '"@"', position, why: '"@" separates the database from the version when a client connects through the proxy (app@VERSION)' };
    }
  }
  return undefined;
}

/**
 * The version schema a migration creates, named as pgroll names it: the migrated schema, `_`, and the
 * file's `version_schema` when it has one, else the migration's name (`version_schema: v2` on
 * `public` is `public_v2`), so a database pgroll and tandem take turns on has one schema per version.
 */
export function versionSchemaName(migration: { name: string; versionSchema?: string }, schema: string): string {
  return `${schema}_${migration.versionSchema ?? migration.name}`;
}
