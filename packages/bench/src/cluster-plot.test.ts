import { describe, expect, test } from 'vitest';
import { parseMetrics, sumOf } from './cluster-plot.js';

describe('Prometheus text parsing for the cluster plot', () => {
  const text = `# HELP kcache_router_decisions_total Routing decisions
# TYPE kcache_router_decisions_total counter
kcache_router_decisions_total{policy="cache_aware",reason="cache_hit",router="r1"} 12
kcache_router_decisions_total{policy="cache_aware",reason="new_prefix",router="r1"} 3
kcache_generation_tokens_total{worker="w1",model="m"} 40
kcache_generation_tokens_total_extra 99
`;
  test('sums the series of one metric that carry the given labels, and nothing else', () => {
    const s = parseMetrics(text);
    expect(sumOf(s, 'kcache_router_decisions_total')).toBe(15);
    expect(sumOf(s, 'kcache_router_decisions_total', { reason: 'cache_hit' })).toBe(12);
    expect(sumOf(s, 'kcache_router_decisions_total', { reason: 'balance_spill' })).toBe(0);
    expect(sumOf(s, 'kcache_generation_tokens_total')).toBe(40);
  });
});
