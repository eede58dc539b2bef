import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run the TypeScript sources; the native addon must be built (`pnpm build`).
    alias: {
      '@kcache/engine': pkg('engine'),
      '@kcache/bench': pkg('bench'),
      '@kcache/block-hash': pkg('block-hash'),
      '@kcache/worker': pkg('worker'),
    },
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
