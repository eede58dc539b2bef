// The addon's entry point: registration only.
#include <napi.h>

#include "engine_wrap.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeEngine", kc::addon::EngineWrap::Define(env));
  exports.Set("loadEngine", Napi::Function::New(env, kc::addon::LoadEngine));
  exports.Set("measureReadBandwidth", Napi::Function::New(env, kc::addon::MeasureReadBandwidth));
  exports.Set("argmax", Napi::Function::New(env, kc::addon::Argmax));
  exports.Set("expWeights", Napi::Function::New(env, kc::addon::ExpWeights));
  exports.Set("benchDecodeAttention", Napi::Function::New(env, kc::addon::BenchDecodeAttention));
  exports.Set("dequantizeRow", Napi::Function::New(env, kc::addon::DequantizeRow));
  exports.Set("quantizeRow", Napi::Function::New(env, kc::addon::QuantizeRow));
  exports.Set("matmulQuantized", Napi::Function::New(env, kc::addon::MatmulQuantized));
  exports.Set("matmulMany", Napi::Function::New(env, kc::addon::MatmulMany));
  return exports;
}
}  // namespace

NODE_API_MODULE(kcache_engine, Init)
