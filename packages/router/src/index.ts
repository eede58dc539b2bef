export { type BreakerState, CircuitBreaker } from './breaker.js';
export { RouterMetrics } from './metrics.js';
export { type PooledWorker, WorkerPool } from './pool.js';
export {
  type Attempt,
  buildViews,
  type Candidate,
  decide,
  type RouteChoice,
  type RouteOutcome,
  type RouteRequest,
  type Router,
  type RouteState,
  route,
} from './route.js';
export { type RouterOptions, type RunningRouter, startRouter } from './router-server.js';
export {
  type ApiKeyLine,
  ApiKeys,
  ApiKeysError,
  parseApiKeyLines,
  readApiKeysFile,
  type Tenant,
  TenantLimits,
  TokenBucket,
  tenantCacheSalt,
  tenantRequestId,
} from './tenancy/index.js';
