// The `kcache generate` contract, run as users run it (the built CLI, a real process).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { SMALL_HF, writeTinyHfModel } from './helpers/hf-model.js';
import { REPO_ROOT, STORIES_260K } from './helpers/paths.js';
import { TINY_BPE_TOKENIZER } from './helpers/tokenizer-json.js';

function kcache(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'packages/cli/dist/main.js'), ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('kcache generate', () => {
  test('--json on stories260K with --prompt-ids', () => {
    const r = kcache('generate', '--model', STORIES_260K, '--prompt-ids', '1', '--max-tokens', '8', '--temperature', '0', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokenIds).toEqual([461, 461, 401, 401, 401, 461, 378, 455]);
    expect(out).toMatchObject({ text: '', promptTokens: 1, finishReason: 'length' });
    expect(out.timings.decodeTokensPerSecond).toBeGreaterThan(0);
  });

  test('text prompt on a dummy model', () => {
    const r = kcache(
      'generate',
      '--model',
      'dummy:tiny',
      '--prompt',
      'Hello',
      '--max-tokens',
      '12',
      '--seed',
      '3',
      '--ignore-eos',
      '--json',
    );
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.promptTokens).toBe(6); // BOS + 5 bytes
    expect(out.tokenIds).toHaveLength(12);
    expect(typeof out.text).toBe('string');
  });

  test('text prompt through a Hugging Face tokenizer.json, streamed', () => {
    const m = writeTinyHfModel({ ...SMALL_HF, dtype: 'bf16' });
    writeFileSync(join(m.dir, 'tokenizer.json'), JSON.stringify(TINY_BPE_TOKENIZER));
    const r = kcache('generate', '--model', m.dir, '--prompt', 'hello world', '--max-tokens', '5', '--temperature', '0', '--ignore-eos');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/prompt 7 tokens, generated 5/); // 7 text tokens: this tokenizer adds no BOS
  });

  test('--attention kcache with N above the context gives the full-attention output', () => {
    const args = ['generate', '--model', STORIES_260K, '--prompt-ids', '1', '--max-tokens', '8', '--temperature', '0', '--json'];
    const r = kcache(...args, '--attention', 'kcache', '--kcache-topn', '512', '--kcache-full-layers', '0');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).tokenIds).toEqual([461, 461, 401, 401, 401, 461, 378, 455]);
    const frac = kcache(...args, '--attention', 'kcache', '--kcache-topn', '0.5');
    expect(frac.code).toBe(0);
    expect(JSON.parse(frac.stdout).tokenIds).toHaveLength(8);
  });

  test.each([
    [['generate', '--prompt', 'x'], 2, /--model is required/],
    [['generate', '--model', 'dummy:tiny'], 2, /exactly one of --prompt and --prompt-ids/],
    [['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--temperature=-1'], 2, /temperature must be a finite number >= 0, got -1/],
    [['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--top-p', '0'], 2, /--top-p must be in \(0, 1\]/],
    [['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--max-tokens', 'lots'], 2, /--max-tokens must be an integer >= 0, got 'lots'/],
    [['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--max-tokens', '5000'], 2, /exceeds the context length 2048/],
    [
      ['generate', '--model', 'dummy:tiny', '--prompt-ids', '1,2,x'],
      2,
      /--prompt-ids must be comma-separated non-negative integers, got 'x' at index 2/,
    ],
    [['generate', '--model', 'dummy:tiny', '--prompt-ids', '1,900'], 2, /900 at index 1 is outside the vocabulary \(size 512\)/],
    [['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--bogus'], 2, /Unknown option '--bogus'/],
    [['generate', '--model', STORIES_260K, '--prompt', 'x'], 2, /has no tokenizer: pass --prompt-ids/],
    [['generate', '--model', '/nope/model.bin', '--prompt', 'x'], 1, /\/nope\/model.bin: no such file or directory/],
    [
      ['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--attention', 'sparse'],
      2,
      /--attention must be full or kcache, got 'sparse'/,
    ],
    [
      ['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--attention', 'kcache', '--kcache-topn', '0'],
      2,
      /--kcache-topn must be a positive/,
    ],
    [['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--kcache-topn', '8'], 2, /need --attention kcache/],
    [
      ['generate', '--model', 'dummy:tiny', '--prompt', 'x', '--attention', 'kcache', '--kcache-full-layers', '3'],
      1,
      /kcache fullLayers must be an integer in 0\.\.2, got 3/,
    ],
    [['bench', 'kcache', '--parts', 'budget', '--budget-gib', 'abc'], 2, /--budget-gib: 'abc' is not a number of GiB/],
    [
      ['bench', 'kcache', '--parts', 'budget', '--model', 'dummy:tiny', '--budget-contexts', '0'],
      2,
      /--budget-contexts \/ --budget-gib: context 0 must be in 1\.\.2039/,
    ],
    [['bench', 'kcache', '--parts', 'fidelity,speed'], 2, /--parts: 'speed' is not one of fidelity, attention, decode, budget, capacity/],
    [
      ['bench', 'faults', '--cases', 'sigkill,meteor'],
      2,
      /--cases: 'meteor' is not one of sigkill, sigstop, redis-restart, poison, overload, drain/,
    ],
    [['frobnicate'], 2, /unknown command 'frobnicate'/],
    [['serv', 'router'], 2, /unknown command 'serv' \(did you mean 'serve'\? try: kcache help\)/],
  ])('%j fails with one line', (args, code, message) => {
    const r = kcache(...(args as string[]));
    expect(r.code).toBe(code);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('CLI conventions', () => {
  test('--version, and --help on every command prints its usage and exits 0', () => {
    const v = kcache('--version');
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^kcache \d+\.\d+\.\d+\n$/);
    for (const [command, usage] of [
      ['up', /kcache up \[--workers 2\]/],
      ['ask', /kcache ask \[--addr/],
      ['generate', /kcache generate --model/],
      ['serve', /kcache serve worker --model M[\s\S]*kcache serve router/],
      ['health', /kcache health/],
      ['certs', /kcache certs --out DIR/],
      ['bench', /kcache bench engine[\s\S]*kcache bench faults/],
    ] as const) {
      const r = kcache(command, '--help');
      expect(r.code, command).toBe(0);
      expect(r.stdout, command).toMatch(usage);
    }
  });
});
