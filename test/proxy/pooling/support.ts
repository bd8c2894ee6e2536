/** Pooling settings for tests: PgBouncer's defaults, trust authentication, transaction mode, unless overridden. */
import { DEFAULT_POOL_SETTINGS } from '../../../src/proxy/pool/pool.js';
import type { PoolingOptions } from '../../../src/proxy/config.js';

export function poolingOptions(overrides: Partial<Omit<PoolingOptions, 'settings'>> & { settings?: Partial<PoolingOptions['settings']> } = {}): PoolingOptions {
  return {
    mode: 'transaction',
    idleTransactionTimeoutMs: 0,
    maxPreparedStatements: 200,
    authType: 'trust',
    ...overrides,
    settings: { ...DEFAULT_POOL_SETTINGS, ...overrides.settings },
  };
}
