// Real chat templates rendered as Hugging Face's apply_chat_template renders them. The templates
// are the ones Meta-Llama-3-8B-Instruct and Qwen2-7B-Instruct ship in tokenizer_config.json; the
// expected strings follow from the templates' definitions.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { ChatTemplate, loadChatTemplate } from './template.js';

const LLAMA3 =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const QWEN2 =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('Llama 3: BOS from the template, headers, trimmed content, the assistant turn opened', () => {
  const t = new ChatTemplate(LLAMA3, '<|begin_of_text|>', '<|eot_id|>');
  const text = t.render([
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: '  Hi there \n' },
  ]);
  expect(text).toBe(
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
  );
  expect(t.render([{ role: 'user', content: 'x' }], false)).toBe(
    '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>',
  );
});

test('Qwen2: a default system turn when none is given, no BOS', () => {
  const t = new ChatTemplate(QWEN2, '', '<|im_end|>');
  expect(t.render([{ role: 'user', content: 'Hi' }])).toBe(
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  );
  expect(
    t.render([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: 'Bye' },
    ]),
  ).toBe(
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n' +
      '<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n',
  );
});

test("from a model directory's tokenizer_config.json (tokens as strings or AddedToken objects), or a --chat-template file", () => {
  const dir = mkdtempSync(join(tmpdir(), 'kcache-chat-'));
  dirs.push(dir);
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ chat_template: LLAMA3, bos_token: { content: '<|begin_of_text|>', special: true }, eos_token: '<|eot_id|>' }),
  );
  expect(loadChatTemplate(dir)?.render([{ role: 'user', content: 'a' }])).toMatch(/^<\|begin_of_text\|><\|start_header_id\|>user/);
  const file = join(dir, 'qwen.jinja');
  writeFileSync(file, QWEN2);
  expect(loadChatTemplate(dir, file)?.render([{ role: 'user', content: 'a' }])).toMatch(/^<\|im_start\|>system/);
  expect(loadChatTemplate('dummy:tiny')).toBeNull();
  expect(() => loadChatTemplate('dummy:tiny', join(dir, 'missing.jinja'))).toThrow(/--chat-template: .*missing\.jinja: no such file/);
});
