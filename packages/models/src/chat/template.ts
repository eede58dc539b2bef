/**
 * Chat templates: the Jinja template a model ships in its `tokenizer_config.json`
 * (`chat_template`, with `bos_token` / `eos_token`), or one given by the operator, rendered with
 * @huggingface/jinja exactly as Hugging Face's `apply_chat_template` renders it.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { ModelLoadError } from '../errors.js';
import { readGguf } from '../gguf/read.js';
import { ggufTokenizerConfig } from '../gguf/tokenizer.js';
import { splitQuantSuffix } from '../models/index.js';
import { tokenText } from '../tokenizer/hf.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    readonly bosToken = '',
    readonly eosToken = '',
  ) {
    this.template = new Template(source);
  }

  /** The prompt text for `messages`, ending with the assistant's turn opened when `addGenerationPrompt`. */
  render(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    return this.template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.bosToken,
      eos_token: this.eosToken,
    });
  }
}

/**
 * The chat template of a model reference: its Hugging Face directory's tokenizer_config.json or
 * its GGUF file's tokenizer.chat_template, or null where there is none (dummy models, llama2.c
 * files, a config without `chat_template`).
 * `override`: a template file given by the operator (`--chat-template`), with the model's special tokens.
 */
export function loadChatTemplate(modelRef: string, override?: string): ChatTemplate | null {
  const path = modelRef.startsWith('dummy:') ? modelRef : splitQuantSuffix(modelRef).path;
  const dir = !path.startsWith('dummy:') && existsSync(path) && statSync(path).isDirectory() ? path : null;
  let cfg: Record<string, unknown> = {};
  if (path.endsWith('.gguf') && existsSync(path)) cfg = ggufTokenizerConfig(readGguf(path).metadata);
  if (dir && existsSync(join(dir, 'tokenizer_config.json'))) {
    try {
      cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ModelLoadError(`${join(dir, 'tokenizer_config.json')}: ${(e as Error).message}`);
    }
  }
  let source: string | null = null;
  if (override !== undefined) {
    try {
      source = readFileSync(override, 'utf8');
    } catch (e) {
      throw new ModelLoadError(
        `--chat-template: ${override}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
      );
    }
  } else if (typeof cfg.chat_template === 'string') source = cfg.chat_template;
  else if (Array.isArray(cfg.chat_template)) {
    // several named templates: the one named "default"
    const named = (cfg.chat_template as { name?: string; template?: string }[]).find((t) => t.name === 'default');
    source = named?.template ?? null;
  }
  if (source === null) return null;
  try {
    return new ChatTemplate(source, tokenText(cfg.bos_token), tokenText(cfg.eos_token));
  } catch (e) {
    throw new ModelLoadError(`chat template of ${override ?? modelRef}: ${(e as Error).message}`);
  }
}
