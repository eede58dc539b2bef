import { describe, expect, test } from 'vitest';
import { BatchInputError, outputLine, parseBatchInput } from './format.js';

const line = (o: Record<string, unknown>) =>
  JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { prompt: 'x' }, ...o });

function problems(text: string): string[] {
  try {
    parseBatchInput(text);
  } catch (e) {
    expect(e).toBeInstanceOf(BatchInputError);
    return (e as BatchInputError).problems;
  }
  throw new Error('accepted');
}

describe('Batch input', () => {
  test('OpenAI lines: completions and chat, blank lines skipped', () => {
    const chat = JSON.stringify({
      custom_id: 'b',
      method: 'POST',
      url: '/v1/chat/completions',
      body: { messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(parseBatchInput(`${line({})}\n\n${chat}\n`)).toEqual([
      { customId: 'a', url: '/v1/completions', body: { prompt: 'x' } },
      { customId: 'b', url: '/v1/chat/completions', body: { messages: [{ role: 'user', content: 'hi' }] } },
    ]);
  });

  test('every bad line is named with its field, 1-based', () => {
    const text = [
      '{nope',
      line({ custom_id: '' }),
      line({ method: 'GET' }),
      line({ url: '/v1/embeddings' }),
      line({ custom_id: 'c', body: [] }),
      line({ custom_id: 'd', body: { prompt: 'x', stream: true } }),
      line({ custom_id: 'e', url: '/v1/chat/completions', body: { prompt: 'x' } }),
      line({ custom_id: 'f', body: {} }),
      line({ custom_id: 'g' }),
      line({ custom_id: 'g' }),
      '[1]',
    ].join('\n');
    const p = problems(text);
    expect(p[0]).toMatch(/^line 1: not valid JSON/);
    expect(p.slice(1)).toEqual([
      'line 2: custom_id: a non-empty string is required',
      'line 3: method: must be "POST", got "GET"',
      'line 4: url: must be one of /v1/completions, /v1/chat/completions, got "/v1/embeddings"',
      'line 5: body: a JSON object is required',
      'line 6: body.stream: batch requests are not streamed',
      'line 7: body.messages: an array is required for /v1/chat/completions',
      'line 8: body.prompt: required for /v1/completions',
      "line 10: custom_id 'g' is already used on line 9",
      'line 11: a request must be a JSON object',
    ]);
    expect(new BatchInputError(p).message).toBe(`${p[0]} (and 9 more problems)`);
    expect(problems('\n\n')).toEqual(['the file holds no requests']);
  });

  test('output lines in OpenAI’s shape: a response with its status, or an error without one', () => {
    const ok = JSON.parse(outputLine('a', { kind: 'response', statusCode: 200, requestId: 'r1', body: { x: 1 } }));
    expect(ok).toMatchObject({ custom_id: 'a', response: { status_code: 200, request_id: 'r1', body: { x: 1 } }, error: null });
    expect(ok.id).toMatch(/^batch_req_[0-9a-f]{32}$/);
    const failed = JSON.parse(outputLine('b', { kind: 'error', code: 'request_failed', message: 'gone' }));
    expect(failed).toMatchObject({ custom_id: 'b', response: null, error: { code: 'request_failed', message: 'gone' } });
  });
});
