/**
 * Identifier and literal quoting. Every identifier that reaches SQL text goes through
 * `quoteIdent`, every string value through `quoteLiteral`: nothing is glued from user input raw.
 */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteLiteral(value: string): string {
  const quoted = value.replace(/'/g, "''");
  // An E'' literal reads the same whatever standard_conforming_strings says.
  return value.includes('\\') ? `E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

/** `"schema"."name"` */
export function qualified(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** PostgreSQL truncates identifiers to 63 bytes; names we derive must stay unique when that happens. */
export const MAX_IDENTIFIER_BYTES = 63;

/**
 * A derived identifier (`prefix` + `base`) that fits in 63 bytes. When it would not fit, the base is
 * shortened and a short hash of the full name keeps two long names from colliding.
 */
export function derivedIdent(prefix: string, base: string): string {
  const full = prefix + base;
  if (Buffer.byteLength(full) <= MAX_IDENTIFIER_BYTES) return full;
  const hash = fnv1a(full).toString(16).padStart(8, '0');
  let shortened = full;
  while (Buffer.byteLength(shortened) + 9 > MAX_IDENTIFIER_BYTES) shortened = shortened.slice(0, -1);
  return `${shortened}_${hash}`;
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
