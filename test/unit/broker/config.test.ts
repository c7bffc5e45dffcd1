import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseBrokerConfig } from '../../../broker/config.js';
import { SLUICE_VERSION } from '../../../broker/version.js';
import { hasCode } from '../../../client/protocol/errors.js';

describe('broker config', () => {
  it('fills every default and freezes the result', () => {
    const c = parseBrokerConfig({});
    expect(c).toMatchObject({ host: '127.0.0.1', port: 7420, dataDir: './sluice-data', fsync: 'always', handshakeMaxFrameBytes: 8192, maxFrameBytes: 8 << 20, idleTimeoutMs: 60_000, heartbeatIntervalMs: 20_000 });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('names the bad option', () => {
    for (const [opts, path] of [[{ port: 70_000 }, 'port'], [{ fsync: 'sometimes' }, 'fsync'], [{ maxInFlight: 0 }, 'maxInFlight'], [{ host: '' }, 'host']] as const) {
      let err: unknown;
      try {
        parseBrokerConfig(opts);
      } catch (e) {
        err = e;
      }
      expect(hasCode(err, 'INVALID_CONFIG')).toBe(true);
      expect((err as Error).message).toContain(`broker option ${path} must be`);
    }
  });

  it('reports the version package.json declares', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(SLUICE_VERSION).toBe(pkg.version);
  });
});
