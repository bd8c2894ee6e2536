/**
 * Values that `tandem convert` cannot know (the value existing rows get for a new NOT NULL column,
 * say) are written as placeholders that start with `REVIEW:`. They are not SQL, so nothing could run
 * them by accident, and `start` refuses a file that still holds one, naming its line, until a person
 * has written the real value.
 */
export const PLACEHOLDER_PREFIX = 'REVIEW:';

export function placeholder(what: string): string {
  return `${PLACEHOLDER_PREFIX} ${what}`;
}

export interface PlaceholderFound {
  /** Zero-based index of the operation that holds it. */
  operation: number;
  /** Dotted path inside the operation's body, e.g. `up`. */
  field: string;
  value: string;
  /** 1-based line in the file, when it could be found. */
  line?: number;
}

/** Every placeholder left in a parsed migration document, in document order. */
export function findPlaceholders(raw: unknown, text: string): PlaceholderFound[] {
  const operations = (raw as { operations?: unknown })?.operations;
  if (!Array.isArray(operations)) return [];
  const found: PlaceholderFound[] = [];
  operations.forEach((operation, index) => {
    if (operation === null || typeof operation !== 'object') return;
    for (const body of Object.values(operation as Record<string, unknown>)) visit(body, '', (value, path) => found.push({ operation: index, field: path, value }));
  });
  // The k-th placeholder in document order is on the k-th line that holds the prefix outside a comment:
  // JSON and YAML both keep keys in the order they are written.
  const lines = linesWithPrefix(text);
  found.forEach((placeholder, k) => (placeholder.line = lines[k]));
  return found;
}

function visit(value: unknown, path: string, report: (value: string, path: string) => void): void {
  if (typeof value === 'string') {
    if (value.trimStart().startsWith(PLACEHOLDER_PREFIX)) report(value, path);
  } else if (Array.isArray(value)) {
    value.forEach((item, index) => visit(item, `${path}[${index}]`, report));
  } else if (value !== null && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) visit(child, path ? `${path}.${key}` : key, report);
  }
}

function linesWithPrefix(text: string): number[] {
  const lines: number[] = [];
  text.split('\n').forEach((line, index) => {
    const at = line.indexOf(PLACEHOLDER_PREFIX);
    if (at >= 0 && !line.slice(0, at).includes('#')) lines.push(index + 1);
  });
  return lines;
}
