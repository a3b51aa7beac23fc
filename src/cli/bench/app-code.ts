/**
 * The application code of the read-through versus cache-aside comparison: four ways an
 * application reads an article, run by `cachewise bench` as written here. The report counts the
 * lines of each function from this file's own text (the TypeScript source, or its compiled
 * JavaScript in dist/, which keeps the same lines: every block here has its braces on lines of
 * their own, as the compiler writes them), so the figure is that of the code that ran.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Collection } from '../../index.js';
import type { Profile } from './workload.js';

/** What the application has at hand. */
export interface App {
  /** A read-through collection. */
  readonly articles: Collection<Profile>;
  /** A cache-aside collection (read: 'aside'). */
  readonly asideArticles: Collection<Profile>;
  /** The database, as the application's own data layer reads it. */
  readonly database: { findOne(slug: string): Promise<Profile | undefined> };
  /** A plain cache with the seed's calls (get, setex). */
  readonly cache: { get(key: string): Promise<string | undefined>; setex(key: string, seconds: number, json: string): Promise<void> };
}

export async function readThrough(app: App, slug: string) {
  return app.articles.get(slug);
}

export async function cacheAsideLookupFill(app: App, slug: string) {
  const found = await app.asideArticles.lookup(slug);
  if (found.hit) {
    return found.value;
  }
  const article = await app.database.findOne(slug);
  await app.asideArticles.fill(slug, article, found.lease);
  return article;
}

export async function cacheAsideGetOrLoad(app: App, slug: string) {
  return app.asideArticles.getOrLoad(slug, (key) => app.database.findOne(key));
}

// The seed's getArticle ("Write-Around for Content Management"), over a plain cache.
export async function cacheAsideByHand(app: App, slug: string) {
  const cacheKey = `article:${slug}`;
  const cached = await app.cache.get(cacheKey);
  let article = cached === undefined ? undefined : (JSON.parse(cached) as Profile);
  if (!article) {
    article = await app.database.findOne(slug);
    if (article) {
      await app.cache.setex(cacheKey, 3600, JSON.stringify(article));
    }
  }
  return article;
}

/** The text of the exported function `name` in this file, from `export` to its closing brace. */
export function sourceOf(name: string): string {
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  const start = text.search(new RegExp(`^export (async )?function ${name}\\(`, 'm'));
  if (start === -1) return '';
  const end = text.indexOf('\n}', start);
  return text.slice(start, end === -1 ? undefined : end + 2);
}

/** Non-blank lines that are not only a comment. */
export function codeLines(source: string): number {
  return source.split('\n').filter((line) => line.trim() !== '' && !line.trim().startsWith('//')).length;
}
