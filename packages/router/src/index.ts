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
