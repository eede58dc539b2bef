import { describe, expect, test } from 'vitest';
import type { BatchRequest } from './format.js';
import { cacheAwareGroups, fileOrderGroups, promptKey } from './order.js';

const completion = (prompt: unknown): BatchRequest => ({ customId: 'x', url: '/v1/completions', body: { prompt } });

describe('cache-aware order', () => {
  test('prompts sharing a prefix form a group led by the earliest; groups in file order', () => {
    const a = 'A'.repeat(80);
    const b = 'B'.repeat(80);
    const keys = [`${b}1`, `${a}1`, `${b}2`, 'short', `${a}2`, `${a}3`, `${b}3`];
    expect(cacheAwareGroups(keys, 64)).toEqual([[0, 2, 6], [1, 4, 5], [3]]);
  });

  test('below the shared minimum, prompts stay apart; identical prompts are one group', () => {
    expect(cacheAwareGroups(['abc1', 'abc2'], 64)).toEqual([[0], [1]]);
    expect(cacheAwareGroups(['same prompt', 'same prompt'], 4)).toEqual([[0, 1]]);
    expect(fileOrderGroups(3)).toEqual([[0], [1], [2]]);
  });

  test('a prompt key from text, token ids and chat messages', () => {
    expect(promptKey(completion('hello'))).toBe('hello');
    expect(promptKey(completion([1, 2, 3]))).toBe('1,2,3,');
    expect(promptKey(completion(['first', 'second']))).toBe('first');
    const chat: BatchRequest = {
      customId: 'c',
      url: '/v1/chat/completions',
      body: {
        messages: [
          { role: 'system', content: 'Be brief.' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Hel' },
              { type: 'text', text: 'lo' },
            ],
          },
        ],
      },
    };
    expect(promptKey(chat)).toBe('<system>Be brief.\n<user>Hello\n');
  });
});
