import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
export const SHARED = process.env.KCACHE_SHARED ?? resolve(REPO_ROOT, '..', 'shared');
export const STORIES_260K = resolve(SHARED, 'models', 'stories260K.bin');

if (!existsSync(STORIES_260K)) {
  throw new Error(`${STORIES_260K} is missing: the tests need shared/models/stories260K.bin (set KCACHE_SHARED)`);
}
