import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from './paths.js';

export interface KcacheProcess {
  proc: ChildProcess;
  /** The JSON lines it printed so far. */
  events: Record<string, unknown>[];
  /** The `ready` event. */
  ready: Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

/** Runs the built CLI (`kcache ...args`) as a child process and follows its JSON event lines. */
/** `kcache up` flags that let each process it starts take a free port (its ready line says which). */
export const UP_FREE_PORTS = ['--port', '0', '--worker-port', '0', '--metrics-port', '0', '--http-port', '0'];

export function spawnKcache(args: string[]): KcacheProcess {
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'packages/cli/dist/main.js'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events: Record<string, unknown>[] = [];
  const ready = new Promise<Record<string, unknown>>((resolve) =>
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (l) => {
      const e = JSON.parse(l) as Record<string, unknown>;
      events.push(e);
      if (e.event === 'ready') resolve(e);
    }),
  );
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, events, ready, exited };
}

/** `kcache serve worker` on a free port with one compute thread; append any other flags. */
export function workerArgs(model: string, redisUrl: string, id: string, numBlocks: number): string[] {
  return [
    'serve',
    'worker',
    '--model',
    model,
    '--port',
    '0',
    '--redis-url',
    redisUrl,
    '--id',
    id,
    '--num-blocks',
    String(numBlocks),
    '--threads',
    '1',
  ];
}

/**
 * The built CLI as a child process, awaited: its exit code and output. For tests whose router or
 * workers run in the test's own process, where spawnSync would block them.
 */
export function runKcache(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(REPO_ROOT, 'packages/cli/dist/main.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
