/**
 * The table printer: a Markdown-style table padded to its widest cells, so it reads the same in a
 * terminal and pasted into an issue or a README.
 */

export interface Column {
  readonly header: string;
  /** Numbers read best right-aligned. Default 'left'. */
  readonly align?: 'left' | 'right';
}

export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((column, i) => Math.max(column.header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `| ${columns.map((column, i) => pad(cells[i] ?? '', widths[i]!, column.align ?? 'left')).join(' | ')} |`;
  const rule = `|${columns.map((column, i) => (column.align === 'right' ? `${'-'.repeat(widths[i]! + 1)}:` : '-'.repeat(widths[i]! + 2))).join('|')}|`;
  return [line(columns.map((c) => c.header)), rule, ...rows.map(line)].join('\n');
}

function pad(text: string, width: number, align: 'left' | 'right'): string {
  return align === 'right' ? text.padStart(width) : text.padEnd(width);
}

/** Milliseconds with sensible precision: <0.001, 0.021, 0.45, 3.2, 51. */
export function ms(value: number): string {
  if (value === 0) return '0';
  if (value < 0.001) return '<0.001';
  if (value < 0.1) return value.toFixed(3);
  if (value < 1) return value.toFixed(2);
  if (value < 10) return value.toFixed(1);
  return value.toFixed(0);
}

export function percent(ratio: number): string {
  return ratio === 1 || ratio === 0 ? `${ratio * 100}%` : `${(ratio * 100).toFixed(1)}%`;
}

/** Wraps `text` at word boundaries to lines of at most `width` characters, each indented. */
export function wrap(text: string, width: number, indent = ''): string {
  const lines: string[] = [];
  let current = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (current !== '' && indent.length + current.length + 1 + word.length > width) {
      lines.push(indent + current);
      current = word;
    } else current = current === '' ? word : `${current} ${word}`;
  }
  if (current !== '') lines.push(indent + current);
  return lines.join('\n');
}
