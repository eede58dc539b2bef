#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <vector>
#include <memory>

#include "kcache/engine.h"

namespace kc::addon {

// JS handle to a loaded engine. Created only by loadEngine(); every slow call runs on the
// libuv pool through an AsyncWorker and resolves a Promise.
class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);

  Engine* engine() { return engine_.get(); }
  std::atomic<bool>& busy() { return busy_; }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value ReadWeight(const Napi::CallbackInfo& info);
  Napi::Value ReadWeightRaw(const Napi::CallbackInfo& info);
  Napi::Value FillKvRandom(const Napi::CallbackInfo& info);
  Napi::Value ReadBlocks(const Napi::CallbackInfo& info);
  Napi::Value WriteBlocks(const Napi::CallbackInfo& info);
  Napi::Value OffloadToHost(const Napi::CallbackInfo& info);
  Napi::Value ReloadFromHost(const Napi::CallbackInfo& info);
  Napi::Value HostCopy(const Napi::CallbackInfo& info, bool out);
  Napi::Value ReadHostSlots(const Napi::CallbackInfo& info);
  Napi::Value BytesOut(const Napi::CallbackInfo& info, const char* call, const char* noun,
                       const std::function<void(const std::vector<int>&, uint8_t*)>& read);
  Napi::Value BytesIn(const Napi::CallbackInfo& info, const char* call, const char* noun,
                      const std::function<void(const std::vector<int>&, const uint8_t*)>& write);
  Napi::Value WriteHostSlots(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::unique_ptr<Engine> engine_;
  std::atomic<bool> busy_{false};
};

Napi::Value LoadEngine(const Napi::CallbackInfo& info);
Napi::Value MeasureReadBandwidth(const Napi::CallbackInfo& info);
Napi::Value Argmax(const Napi::CallbackInfo& info);
Napi::Value ExpWeights(const Napi::CallbackInfo& info);
Napi::Value BenchDecodeAttention(const Napi::CallbackInfo& info);
// The block-quantized formats, for tests: the active kernel variant's dequantization and matmul,
// and the quantizers of quantize-on-load.
Napi::Value DequantizeRow(const Napi::CallbackInfo& info);
Napi::Value QuantizeRow(const Napi::CallbackInfo& info);
Napi::Value MatmulQuantized(const Napi::CallbackInfo& info);
Napi::Value MatmulMany(const Napi::CallbackInfo& info);

}  // namespace kc::addon
