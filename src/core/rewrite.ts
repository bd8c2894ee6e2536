/**
 * Renames column references inside a SQL expression (a CHECK, an index definition) so that it can
 * be recreated on a shadow column. A small tokenizer, not a parser: it skips string literals,
 * dollar-quoted strings and comments, and leaves alone words that cannot be column references here:
 * qualified names (after a dot), type names (after ::) and function names (before an opening paren).
 */
export function renameColumnRefs(sql: string, mapping: ReadonlyMap<string, string>): string {
  return substituteColumnRefs(sql, (name) => {
    const renamed = mapping.get(name);
    return renamed === undefined ? undefined : `"${renamed.replace(/"/g, '""')}"`;
  });
}

/** Replaces each column reference for which `replacement` returns SQL text; see renameColumnRefs. */
export function substituteColumnRefs(sql: string, replacement: (name: string) => string | undefined): string {
  let out = '';
  let i = 0;
  let previous = '';
  while (i < sql.length) {
    const rest = sql.slice(i);
    const skip =
      /^'(?:[^']|'')*'/.exec(rest) ??
      /^(?:[eE])'(?:[^'\\]|\\.|'')*'/.exec(rest) ??
      /^(\$[A-Za-z_]*\$)[\s\S]*?\1/.exec(rest) ??
      /^--[^\n]*/.exec(rest) ??
      /^\/\*[\s\S]*?\*\//.exec(rest);
    if (skip) {
      out += skip[0];
      i += skip[0].length;
      previous = "'";
      continue;
    }
    const quoted = /^"((?:[^"]|"")+)"/.exec(rest);
    const bare = quoted ? null : /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(rest);
    if (quoted || bare) {
      const token = (quoted ?? bare)![0];
      const name = quoted ? quoted[1]!.replace(/""/g, '"') : token.toLowerCase();
      const after = sql.slice(i + token.length).trimStart();
      const isReference = previous !== '.' && previous !== '::' && !after.startsWith('(') && !after.startsWith('.');
      const substitute = isReference ? replacement(name) : undefined;
      out += substitute ?? token;
      i += token.length;
      previous = 'word';
      continue;
    }
    const punctuation = rest.startsWith('::') ? '::' : rest[0]!;
    out += punctuation;
    i += punctuation.length;
    if (!/\s/.test(punctuation)) previous = punctuation;
  }
  return out;
}
