import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: integration tests spawn brokers and fsync; keep the pool small.
    pool: 'forks',
    maxWorkers: 2,
    // The JSON report is what .ci/run summarises as "N passed, N failed".
    reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
  },
});
