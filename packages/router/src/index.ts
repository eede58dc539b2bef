export { type BreakerState, CircuitBreaker } from './breaker.js';
export { RouterMetrics } from './metrics.js';
export { type RouterOptions, type RunningRouter, startRouter } from './router-server.js';
