import { ByteTokenizer } from '@kcache/models';
import { expect, test } from 'vitest';
import { StreamDetokenizer } from './detokenizer.js';

const tok = new ByteTokenizer(512);
const ids = (s: string) => tok.encode(s);

function stream(text: string, stop: string[]) {
  const d = new StreamDetokenizer(tok, stop);
  const parts: string[] = [];
  for (const id of ids(text)) {
    const r = d.push([id]);
    parts.push(r.text);
    if (r.stopped) return { out: parts.join(''), stopped: true, parts };
  }
  parts.push(d.flush());
  return { out: parts.join(''), stopped: false, parts };
}

test('multi-byte characters are emitted whole', () => {
  const r = stream('héllo 🌍!', []);
  expect(r.out).toBe('héllo 🌍!');
  expect(r.parts.every((p) => !p.includes('\uFFFD'))).toBe(true);
});

test('a stop string ends the text and is not emitted, not even by a final flush', () => {
  expect(stream('Hello world. Bye', ['. '])).toMatchObject({ out: 'Hello world', stopped: true });
  const d = new StreamDetokenizer(tok, ['eee']);
  expect(
    ids('eeee')
      .map((id) => d.push([id]).text)
      .join(''),
  ).toBe('');
  expect(d.flush()).toBe('');
  expect(stream('abcSTOPdef', ['STOP', 'xyz'])).toMatchObject({ out: 'abc', stopped: true });
});

test('a held-back prefix of a stop string is released when it does not complete', () => {
  const r = stream('abST and more', ['STOP']);
  expect(r).toMatchObject({ out: 'abST and more', stopped: false });
  expect(r.parts).not.toContain('abST'); // "ST" was held back while it could still become STOP
});
