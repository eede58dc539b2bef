/**
 * Baseline policies, each cache-blind: round_robin (a counter per policy instance), least_loaded
 * (fewest in-flight requests, lower id on ties), random, power_of_two (the less loaded of two
 * random picks). `rng` is injectable for tests.
 */
import { candidates, leastLoaded, type RoutingPolicy } from '../types.js';

export function roundRobin(): RoutingPolicy {
  let next = 0;
  return (s, _r, exclude) => {
    const ws = candidates(s, exclude);
    if (ws.length === 0) return null;
    const w = ws[next++ % ws.length] as (typeof ws)[number];
    return { worker: w.id, reason: 'round_robin' };
  };
}

export function leastLoadedPolicy(): RoutingPolicy {
  return (s, _r, exclude) => {
    const w = leastLoaded(candidates(s, exclude));
    return w ? { worker: w.id, reason: 'least_loaded' } : null;
  };
}

export function randomPolicy(rng: () => number = Math.random): RoutingPolicy {
  return (s, _r, exclude) => {
    const ws = candidates(s, exclude);
    if (ws.length === 0) return null;
    return { worker: (ws[Math.floor(rng() * ws.length)] as (typeof ws)[number]).id, reason: 'random' };
  };
}

export function powerOfTwo(rng: () => number = Math.random): RoutingPolicy {
  return (s, _r, exclude) => {
    const ws = candidates(s, exclude);
    if (ws.length === 0) return null;
    const a = ws[Math.floor(rng() * ws.length)] as (typeof ws)[number];
    const b = ws[Math.floor(rng() * ws.length)] as (typeof ws)[number];
    return { worker: (b.load < a.load ? b : a).id, reason: 'power_of_two' };
  };
}
