#include "engine_wrap.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kcache/attention_bench.h"
#include "kcache/cpu_backend.h"
#include "kcache/membw.h"

namespace kc::addon {

namespace {

Napi::FunctionReference* g_constructor = nullptr;

std::vector<int32_t> int32_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(o.Env(), std::string("step: ") + key + " must be an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

double num_field(const Napi::Object& o, const char* key, double dflt, bool required = false) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw Napi::TypeError::New(o.Env(), std::string("model config: ") + key + " is required");
    return dflt;
  }
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("model config: ") + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

EngineOptions parse_options(const Napi::Object& o) {
  Napi::Env env = o.Env();
  EngineOptions opts;
  if (!o.Get("config").IsObject()) throw Napi::TypeError::New(env, "loadEngine: config must be an object");
  Napi::Object c = o.Get("config").As<Napi::Object>();
  ModelConfig& m = opts.config;
  m.dim = static_cast<int>(num_field(c, "dim", 0, true));
  m.hidden_dim = static_cast<int>(num_field(c, "hiddenDim", 0, true));
  m.n_layers = static_cast<int>(num_field(c, "nLayers", 0, true));
  m.n_heads = static_cast<int>(num_field(c, "nHeads", 0, true));
  m.n_kv_heads = static_cast<int>(num_field(c, "nKvHeads", 0, true));
  m.head_dim = static_cast<int>(num_field(c, "headDim", 0, true));
  m.vocab_size = static_cast<int>(num_field(c, "vocabSize", 0, true));
  m.max_seq_len = static_cast<int>(num_field(c, "maxSeqLen", 0, true));
  m.norm_eps = static_cast<float>(num_field(c, "normEps", 1e-5));
  m.qkv_bias = c.Get("qkvBias").ToBoolean().Value();
  if (!c.Get("rope").IsObject()) throw Napi::TypeError::New(env, "model config: rope must be an object");
  Napi::Object r = c.Get("rope").As<Napi::Object>();
  const std::string style = r.Get("style").ToString().Utf8Value();
  if (style == "interleaved") m.rope.style = RopeStyle::Interleaved;
  else if (style == "half-split") m.rope.style = RopeStyle::HalfSplit;
  else throw Napi::TypeError::New(env, "model config: rope.style must be 'interleaved' or 'half-split'");
  m.rope.theta = num_field(r, "theta", 10000.0);
  m.rope.llama3_factor = num_field(r, "llama3Factor", 0.0);
  m.rope.llama3_low_freq_factor = num_field(r, "llama3LowFreqFactor", 1.0);
  m.rope.llama3_high_freq_factor = num_field(r, "llama3HighFreqFactor", 4.0);
  m.rope.llama3_original_max_pos = num_field(r, "llama3OriginalMaxPos", 8192.0);

  opts.num_blocks = static_cast<int>(num_field(o, "numBlocks", 0, true));
  opts.block_size = static_cast<int>(num_field(o, "blockSize", 16));
  opts.threads = static_cast<int>(num_field(o, "threads", 0));
  opts.host_tier_bytes = static_cast<size_t>(num_field(o, "hostTierBytes", 0.0));
  if (o.Get("kvDtype").IsString() && !parse_dtype(o.Get("kvDtype").As<Napi::String>().Utf8Value(), &opts.kv_dtype))
    throw Napi::TypeError::New(env, "loadEngine: unknown kvDtype " + o.Get("kvDtype").As<Napi::String>().Utf8Value());
  opts.kv_dtype_is_default = o.Get("kvDtypeIsDefault").ToBoolean().Value();
  opts.kv_fallback_keeps_bytes = o.Get("kvPoolSizedInBytes").ToBoolean().Value();
  if (o.Get("backend").IsString()) opts.backend = o.Get("backend").As<Napi::String>().Utf8Value();
  const std::string mode = o.Get("attention").IsString() ? o.Get("attention").As<Napi::String>().Utf8Value() : "full";
  if (mode == "full") opts.attention = AttentionMode::Full;
  else if (mode == "kcache") opts.attention = AttentionMode::KCache;
  else throw Napi::TypeError::New(env, "loadEngine: attention must be 'full' or 'kcache'");
  if (o.Get("kcache").IsObject()) {
    Napi::Object k = o.Get("kcache").As<Napi::Object>();
    opts.kcache.topn = static_cast<int>(num_field(k, "topN", opts.kcache.topn));
    opts.kcache.topn_frac = static_cast<float>(num_field(k, "topNFraction", opts.kcache.topn_frac));
    opts.kcache.full_layers = static_cast<int>(num_field(k, "fullLayers", opts.kcache.full_layers));
    if (k.Has("renormalize")) opts.kcache.renormalize = k.Get("renormalize").ToBoolean().Value();
  }

  if (!o.Get("tensors").IsArray()) throw Napi::TypeError::New(env, "loadEngine: tensors must be an array");
  Napi::Array ts = o.Get("tensors").As<Napi::Array>();
  for (uint32_t i = 0; i < ts.Length(); ++i) {
    Napi::Object t = ts.Get(i).As<Napi::Object>();
    TensorSpec s;
    s.name = t.Get("name").ToString().Utf8Value();
    if (!parse_dtype(t.Get("dtype").ToString().Utf8Value(), &s.dtype))
      throw Napi::TypeError::New(env, "tensor " + s.name + ": unsupported dtype " + t.Get("dtype").ToString().Utf8Value());
    s.rows = static_cast<int64_t>(num_field(t, "rows", 0, true));
    s.cols = static_cast<int64_t>(num_field(t, "cols", 0, true));
    if (t.Get("quantize").IsString() && !parse_dtype(t.Get("quantize").As<Napi::String>().Utf8Value(), &s.quantize))
      throw Napi::TypeError::New(env, "tensor " + s.name + ": unsupported quantize " + t.Get("quantize").As<Napi::String>().Utf8Value());
    if (t.Get("file").IsString()) {
      s.file = t.Get("file").As<Napi::String>().Utf8Value();
      s.offset = static_cast<uint64_t>(num_field(t, "offset", 0, true));
    } else {
      s.seed = static_cast<uint64_t>(num_field(t, "seed", 0));
      s.scale = static_cast<float>(num_field(t, "scale", 0, true));
      s.shift = static_cast<float>(num_field(t, "shift", 0));
    }
    opts.tensors.push_back(std::move(s));
  }
  return opts;
}

// The one AsyncWorker of every slow call: `run` computes a Result on the libuv pool and never
// touches a JavaScript value; `resolve` turns the Result into one on the main thread; `done` (if
// any) runs on the main thread after either outcome. `keep` stays referenced until then (the
// engine object a step runs on, and the Float32Array it writes logits to). A C++ InvalidInput
// rejects with code ERR_INVALID_INPUT, any other exception with ERR_ENGINE.
template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Run = std::function<Result()>;
  using Resolve = std::function<Napi::Value(Napi::Env, Result&)>;

  PromiseWorker(Napi::Env env, Run run, Resolve resolve, std::function<void()> done, const std::vector<Napi::Object>& keep)
      : Napi::AsyncWorker(env),
        run_(std::move(run)),
        resolve_(std::move(resolve)),
        done_(std::move(done)),
        deferred_(Napi::Promise::Deferred::New(env)) {
    for (const Napi::Object& o : keep) keep_.push_back(Napi::Persistent(o));
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      result_ = run_();
    } catch (const InvalidInput& e) {
      invalid_ = true;
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    if (done_) done_();
    deferred_.Resolve(resolve_(Env(), result_));
  }
  void OnError(const Napi::Error& e) override {
    if (done_) done_();
    Napi::Object err = e.Value();
    err.Set("code", invalid_ ? "ERR_INVALID_INPUT" : "ERR_ENGINE");
    deferred_.Reject(err);
  }

 private:
  Run run_;
  Resolve resolve_;
  std::function<void()> done_;
  std::vector<Napi::ObjectReference> keep_;
  Result result_{};
  bool invalid_ = false;
  Napi::Promise::Deferred deferred_;
};

template <typename Result>
Napi::Promise queue(Napi::Env env, typename PromiseWorker<Result>::Run run, typename PromiseWorker<Result>::Resolve resolve,
                    std::function<void()> done = {}, const std::vector<Napi::Object>& keep = {}) {
  auto* w = new PromiseWorker<Result>(env, std::move(run), std::move(resolve), std::move(done), keep);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

Napi::Value BenchDecodeAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "benchDecodeAttention(options): an object");
  Napi::Object o = info[0].As<Napi::Object>();
  AttentionBenchOptions b;
  b.n_layers = static_cast<int>(num_field(o, "nLayers", 30));
  b.n_heads = static_cast<int>(num_field(o, "nHeads", 9));
  b.n_kv_heads = static_cast<int>(num_field(o, "nKvHeads", 3));
  b.head_dim = static_cast<int>(num_field(o, "headDim", 64));
  b.block_size = static_cast<int>(num_field(o, "blockSize", 16));
  b.context = static_cast<int>(num_field(o, "context", 0, true));
  b.threads = static_cast<int>(num_field(o, "threads", 0));
  b.iters = static_cast<int>(num_field(o, "iters", 5));
  if (o.Has("renormalize")) b.renormalize = o.Get("renormalize").ToBoolean().Value();
  if (o.Get("kvDtype").IsString() && !parse_dtype(o.Get("kvDtype").As<Napi::String>().Utf8Value(), &b.kv_dtype))
    throw Napi::TypeError::New(env, "benchDecodeAttention: unknown kvDtype " + o.Get("kvDtype").As<Napi::String>().Utf8Value());
  if (!o.Get("topNs").IsArray()) throw Napi::TypeError::New(env, "benchDecodeAttention: topNs must be an array");
  Napi::Array t = o.Get("topNs").As<Napi::Array>();
  for (uint32_t i = 0; i < t.Length(); ++i) b.topns.push_back(t.Get(i).As<Napi::Number>().Int32Value());
  return queue<std::vector<double>>(
      env, [b]() { return bench_decode_attention(b); },
      [](Napi::Env env, std::vector<double>& r) {
        Napi::Array a = Napi::Array::New(env, r.size());
        for (size_t i = 0; i < r.size(); ++i) a.Set(static_cast<uint32_t>(i), r[i]);
        return a;
      });
}

Napi::Value MeasureReadBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "measureReadBandwidth(bytes, threads): two numbers");
  const size_t bytes = static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue());
  const int threads = info[1].As<Napi::Number>().Int32Value();
  return queue<double>(
      env, [bytes, threads]() { return measure_read_bandwidth(bytes, threads); },
      [](Napi::Env env, double& r) { return Napi::Number::New(env, r); });
}

// argmax(logits: Float32Array): number, by the CPU kernels in use (KCACHE_SIMD and the CPU
// select). Synchronous: the event loop runs it for each greedy token of every stream, and a
// JavaScript loop over a 49,152-token vocabulary took 0.1-0.2 ms of it.
Napi::Value Argmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "argmax(logits): a Float32Array");
  Napi::Float32Array x = info[0].As<Napi::Float32Array>();
  return Napi::Number::New(env, cpu_argmax(x.Data(), static_cast<int>(x.ElementLength())));
}

// expWeights(logits: Float32Array, max, temperature, out: Float32Array): out[i] = exp((logits[i] -
// max) / temperature), 0 for -Infinity (cpu_exp_weights). Synchronous, for sampling: V8's Math.exp
// over a 49,152-token vocabulary took ~0.9 ms of the event loop a token.
Napi::Value ExpWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto f32 = [&](size_t i) {
    return info[i].IsTypedArray() && info[i].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
  };
  if (info.Length() != 4 || !f32(0) || !info[1].IsNumber() || !info[2].IsNumber() || !f32(3))
    throw Napi::TypeError::New(env, "expWeights(logits, max, temperature, out): a Float32Array, two numbers, a Float32Array");
  Napi::Float32Array x = info[0].As<Napi::Float32Array>();
  Napi::Float32Array out = info[3].As<Napi::Float32Array>();
  const double t = info[2].As<Napi::Number>().DoubleValue();
  if (!(t > 0) || !std::isfinite(t)) throw Napi::RangeError::New(env, "expWeights: temperature must be a finite number > 0");
  if (out.ElementLength() < x.ElementLength()) throw Napi::RangeError::New(env, "expWeights: out is shorter than logits");
  cpu_exp_weights(x.Data(), static_cast<int>(x.ElementLength()), static_cast<float>(info[1].As<Napi::Number>().DoubleValue()),
                  static_cast<float>(t), out.Data());
  return env.Undefined();
}

Napi::Function EngineWrap::Define(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeEngine",
                                 {InstanceMethod<&EngineWrap::Step>("step"), InstanceMethod<&EngineWrap::Info>("info"),
                                  InstanceMethod<&EngineWrap::ReadWeight>("readWeight"),
                                  InstanceMethod<&EngineWrap::ReadWeightRaw>("readWeightRaw"),
                                  InstanceMethod<&EngineWrap::FillKvRandom>("fillKvRandom"),
                                  InstanceMethod<&EngineWrap::ReadBlocks>("readBlocks"),
                                  InstanceMethod<&EngineWrap::WriteBlocks>("writeBlocks"),
                                  InstanceMethod<&EngineWrap::OffloadToHost>("offloadToHost"),
                                  InstanceMethod<&EngineWrap::ReloadFromHost>("reloadFromHost"),
                                  InstanceMethod<&EngineWrap::ReadHostSlots>("readHostSlots"),
                                  InstanceMethod<&EngineWrap::WriteHostSlots>("writeHostSlots"),
                                  InstanceMethod<&EngineWrap::Dispose>("dispose")});
  g_constructor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "NativeEngine is created by loadEngine()");
  engine_.reset(info[0].As<Napi::External<Engine>>().Data());
}

Napi::Value EngineWrap::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "engine is disposed");
  if (info.Length() != 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "step(batch): batch must be an object");
  Napi::Object b = info[0].As<Napi::Object>();
  StepInput in;
  in.tokens = int32_field(b, "tokens");
  in.positions = int32_field(b, "positions");
  in.row_seq = int32_field(b, "rowSeq");
  in.block_tables = int32_field(b, "blockTables");
  in.table_offset = int32_field(b, "tableOffset");
  in.table_length = int32_field(b, "tableLength");
  in.output_rows = int32_field(b, "outputRows");
  if (!b.Get("seqTopN").IsUndefined()) in.seq_topn = int32_field(b, "seqTopN");
  // the caller's buffer for the logits, written in place on the libuv thread: JavaScript does not
  // touch it until the promise settles
  const size_t n_logits = in.output_rows.size() * static_cast<size_t>(engine_->config().vocab_size);
  Napi::Value lv = b.Get("logits");
  if (!lv.IsTypedArray() || lv.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      lv.As<Napi::Float32Array>().ElementLength() != n_logits)
    throw Napi::TypeError::New(
        env, "step: logits must be a Float32Array of outputRows.length x vocab (" + std::to_string(n_logits) + ") floats");
  Napi::Float32Array logits = lv.As<Napi::Float32Array>();
  float* out = logits.Data();
  bool expected = false;
  if (!busy_.compare_exchange_strong(expected, true))
    throw Napi::Error::New(env, "engine step already in flight: one step at a time");
  Engine* engine = engine_.get();
  return queue<bool>(
      env,
      [engine, out, in = std::move(in)]() {
        engine->step(in, out);
        return true;
      },
      [](Napi::Env env, bool&) { return env.Undefined(); }, [this]() { busy_.store(false); }, {info.This().As<Napi::Object>(), logits});
}

Napi::Value EngineWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "engine is disposed");
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", engine_->backend_name());
  o.Set("backendNote", engine_->backend_note());
  o.Set("threads", engine_->threads());
  o.Set("numBlocks", engine_->num_blocks());
  o.Set("blockSize", engine_->block_size());
  o.Set("kvBytesPerBlock", static_cast<double>(engine_->kv_bytes_per_block()));
  o.Set("kvDtype", dtype_name(engine_->kv_dtype()));
  o.Set("kvDeviceBytesPerBlock", static_cast<double>(engine_->kv_device_bytes_per_block()));
  o.Set("kvHostBytesPerBlock", static_cast<double>(engine_->kv_host_bytes_per_block()));
  o.Set("hostTierSlots", engine_->host_tier_slots());
  const bool kcache = engine_->attention_mode() == AttentionMode::KCache;
  o.Set("attention", kcache ? "kcache" : "full");
  if (kcache) {
    const KCacheOptions& k = engine_->kcache_options();
    Napi::Object ko = Napi::Object::New(env);
    ko.Set("topN", k.topn);
    ko.Set("topNFraction", k.topn_frac);
    ko.Set("fullLayers", k.full_layers);
    ko.Set("renormalize", k.renormalize);
    o.Set("kcache", ko);
  }
  o.Set("weightBytes", static_cast<double>(engine_->weight_bytes()));
  return o;
}

Napi::Value EngineWrap::ReadWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "engine is disposed");
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "readWeight(name): name must be a string");
  try {
    std::vector<float> w = engine_->read_weight(info[0].As<Napi::String>().Utf8Value());
    Napi::Float32Array a = Napi::Float32Array::New(env, w.size());
    std::copy(w.begin(), w.end(), a.Data());
    return a;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value EngineWrap::ReadWeightRaw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "engine is disposed");
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "readWeightRaw(name): name must be a string");
  try {
    Tensor t = engine_->host_weight(info[0].As<Napi::String>().Utf8Value());
    Napi::Uint8Array a = Napi::Uint8Array::New(env, t.bytes());
    std::memcpy(a.Data(), t.data, t.bytes());
    return a;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value EngineWrap::FillKvRandom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "engine is disposed");
  if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "fillKvRandom(seed): seed must be a number");
  if (busy_.load()) throw Napi::Error::New(env, "cannot fill the KV cache while a step is in flight");
  engine_->fill_kv_random(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
  return env.Undefined();
}

namespace {
std::vector<int> block_list(Napi::Env env, const Napi::Value& v, const char* call) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(call) + ": blocks must be an array of block ids");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value x = a.Get(i);
    if (!x.IsNumber()) throw Napi::TypeError::New(env, std::string(call) + ": blocks[" + std::to_string(i) + "] is not a number");
    out[i] = x.As<Napi::Number>().Int32Value();
  }
  return out;
}
}  // namespace

// Blocks' (or host tier slots') bytes out to JavaScript and back in, kv_bytes_per_block() each:
// `call` names the JS method, `noun` what its ids are. Synchronous: a block is kilobytes to a few
// megabytes, copied between steps by the worker's loop.
Napi::Value EngineWrap::BytesOut(const Napi::CallbackInfo& info, const char* call, const char* noun,
                                 const std::function<void(const std::vector<int>&, uint8_t*)>& read) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "engine is disposed");
  if (info.Length() != 1) throw Napi::TypeError::New(env, std::string(call) + "(" + noun + "): one argument");
  std::vector<int> ids = block_list(env, info[0], call);
  if (busy_.load()) throw Napi::Error::New(env, std::string(call) + ": not while a step is in flight");
  Napi::Uint8Array out = Napi::Uint8Array::New(env, ids.size() * engine_->kv_bytes_per_block());
  try {
    read(ids, out.Data());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return out;
}

Napi::Value EngineWrap::BytesIn(const Napi::CallbackInfo& info, const char* call, const char* noun,
                                const std::function<void(const std::vector<int>&, const uint8_t*)>& write) {
  Napi::Env env = info.Env();
  if (!engine_) throw Napi::Error::New(env, "engine is disposed");
  if (info.Length() != 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, std::string(call) + "(" + noun + ", data): data must be a Uint8Array");
  std::vector<int> ids = block_list(env, info[0], call);
  Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
  const size_t need = ids.size() * engine_->kv_bytes_per_block();
  if (data.ByteLength() != need)
    throw Napi::RangeError::New(env, std::string(call) + ": data holds " + std::to_string(data.ByteLength()) + " bytes, " +
                                         std::to_string(ids.size()) + " " + noun + " need " + std::to_string(need));
  if (busy_.load()) throw Napi::Error::New(env, std::string(call) + ": not while a step is in flight");
  try {
    write(ids, data.Data());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
}

Napi::Value EngineWrap::ReadBlocks(const Napi::CallbackInfo& info) {
  return BytesOut(info, "readBlocks", "blocks", [this](const std::vector<int>& ids, uint8_t* out) {
    const size_t bpb = engine_->kv_bytes_per_block();
    for (size_t i = 0; i < ids.size(); ++i) engine_->read_block(ids[i], out + i * bpb);
  });
}

Napi::Value EngineWrap::WriteBlocks(const Napi::CallbackInfo& info) {
  return BytesIn(info, "writeBlocks", "blocks", [this](const std::vector<int>& ids, const uint8_t* in) {
    const size_t bpb = engine_->kv_bytes_per_block();
    for (size_t i = 0; i < ids.size(); ++i) engine_->write_block(ids[i], in + i * bpb);
  });
}

Napi::Value EngineWrap::ReadHostSlots(const Napi::CallbackInfo& info) {
  return BytesOut(info, "readHostSlots", "slots", [this](const std::vector<int>& ids, uint8_t* out) {
    engine_->read_host_slots(ids.data(), static_cast<int>(ids.size()), out);
  });
}

Napi::Value EngineWrap::WriteHostSlots(const Napi::CallbackInfo& info) {
  return BytesIn(info, "writeHostSlots", "slots", [this](const std::vector<int>& ids, const uint8_t* in) {
    engine_->write_host_slots(ids.data(), static_cast<int>(ids.size()), in);
  });
}

// The offload host tier: pool blocks <-> slots (stream-ordered, no wait), and slots' bytes.
Napi::Value EngineWrap::OffloadToHost(const Napi::CallbackInfo& info) { return HostCopy(info, true); }
Napi::Value EngineWrap::ReloadFromHost(const Napi::CallbackInfo& info) { return HostCopy(info, false); }

Napi::Value EngineWrap::HostCopy(const Napi::CallbackInfo& info, bool out) {
  Napi::Env env = info.Env();
  const char* call = out ? "offloadToHost(blocks, slots)" : "reloadFromHost(slots, blocks)";
  if (!engine_) throw Napi::Error::New(env, "engine is disposed");
  if (info.Length() != 2) throw Napi::TypeError::New(env, std::string(call) + ": two arrays");
  std::vector<int> a = block_list(env, info[0], call), b = block_list(env, info[1], call);
  if (a.size() != b.size()) throw Napi::RangeError::New(env, std::string(call) + ": the arrays differ in length");
  if (busy_.load()) throw Napi::Error::New(env, "cannot copy KV blocks while a step is in flight");
  try {
    if (out) engine_->offload_to_host(a.data(), b.data(), static_cast<int>(a.size()));
    else engine_->reload_from_host(a.data(), b.data(), static_cast<int>(a.size()));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
}

Napi::Value EngineWrap::Dispose(const Napi::CallbackInfo& info) {
  if (busy_.load()) throw Napi::Error::New(info.Env(), "cannot dispose while a step is in flight");
  engine_.reset();
  return info.Env().Undefined();
}

Napi::Value LoadEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "loadEngine(options): options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  EngineOptions opts = parse_options(o);
  // onProgress(loadedBytes, totalBytes): called on the JavaScript thread through a thread-safe
  // function while the loading thread places weights; released when loading ends either way
  std::shared_ptr<Napi::ThreadSafeFunction> progress;
  if (o.Has("onProgress") && o.Get("onProgress").IsFunction()) {
    progress = std::make_shared<Napi::ThreadSafeFunction>(
        Napi::ThreadSafeFunction::New(env, o.Get("onProgress").As<Napi::Function>(), "kcache-load-progress", 0, 1));
    opts.on_progress = [progress](uint64_t loaded, uint64_t total) {
      auto* v = new std::pair<uint64_t, uint64_t>(loaded, total);
      const napi_status st = progress->NonBlockingCall(v, [](Napi::Env env, Napi::Function fn, std::pair<uint64_t, uint64_t>* p) {
        fn.Call({Napi::Number::New(env, static_cast<double>(p->first)), Napi::Number::New(env, static_cast<double>(p->second))});
        delete p;
      });
      if (st != napi_ok) delete v;
    };
  }
  return queue<std::unique_ptr<Engine>>(
      env,
      [opts = std::move(opts), progress]() {
        struct Release {
          std::shared_ptr<Napi::ThreadSafeFunction> f;
          ~Release() {
            if (f) f->Release();
          }
        } release{progress};
        return Engine::create(opts);
      },
      [](Napi::Env env, std::unique_ptr<Engine>& engine) -> Napi::Value {
        return g_constructor->New({Napi::External<Engine>::New(env, engine.release())});
      });
}

}  // namespace kc::addon
