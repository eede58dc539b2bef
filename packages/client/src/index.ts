export {
  type ChatMessage,
  type ClientOptions,
  type Completion,
  DEFAULT_ADDRESS,
  type GenerateEvent,
  type GenerateOptions,
  KcacheClient,
  KcacheError,
  type ModelInfo,
  type TokenLogprobs,
  type Usage,
} from './client.js';
