// The block-quantized formats exposed for tests: dequantizeRow, matmulQuantized and matmulMany run
// the CPU backend's kernels (the variant KCACHE_SIMD and the CPU select), quantizeRow the quantizers
// of quantize-on-load. Small synchronous calls: they never see a model-sized tensor.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine_wrap.h"
#include "kcache/cpu_backend.h"
#include "kcache/quant.h"

namespace kc::addon {

namespace {

DType dtype_arg(const Napi::CallbackInfo& info, size_t i) {
  DType t;
  if (!info[i].IsString() || !parse_dtype(info[i].As<Napi::String>().Utf8Value(), &t))
    throw Napi::TypeError::New(info.Env(), "dtype must be a weight type name such as 'q8_0'");
  return t;
}

int64_t count_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsNumber() || info[i].As<Napi::Number>().Int64Value() <= 0)
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a positive integer");
  return info[i].As<Napi::Number>().Int64Value();
}

Backend& cpu() {
  static std::unique_ptr<Backend> b = make_cpu_backend(2);
  return *b;
}

void check_cols(Napi::Env env, DType t, int64_t k) {
  if (k % dtype_block(t) != 0)
    throw Napi::RangeError::New(env, std::to_string(k) + " is not a multiple of " + dtype_name(t) + "'s block of " +
                                         std::to_string(dtype_block(t)));
}

}  // namespace

// dequantizeRow(dtype, bytes: Uint8Array, k): Float32Array, by the CPU backend's embedding op
// (which dequantizes a row of a table exactly as a matmul does).
Napi::Value DequantizeRow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const DType t = dtype_arg(info, 0);
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "bytes must be a Uint8Array");
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  const int64_t k = count_arg(info, 2, "k");
  check_cols(env, t, k);
  if (bytes.ByteLength() != dtype_row_bytes(t, k)) throw Napi::RangeError::New(env, "bytes do not hold one row of k values");
  Tensor table{bytes.Data(), t, 1, k};
  const int32_t token = 0;
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(k));
  cpu().embedding(out.Data(), table, &token, 1);
  return out;
}

// quantizeRow(dtype, values: Float32Array): Uint8Array
Napi::Value QuantizeRow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const DType t = dtype_arg(info, 0);
  if (!can_quantize(t)) throw Napi::TypeError::New(env, std::string("cannot quantize to ") + dtype_name(t));
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "values must be a Float32Array");
  Napi::Float32Array v = info[1].As<Napi::Float32Array>();
  check_cols(env, t, static_cast<int64_t>(v.ElementLength()));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, dtype_row_bytes(t, static_cast<int64_t>(v.ElementLength())));
  quantize_row(t, v.Data(), out.Data(), static_cast<int64_t>(v.ElementLength()));
  return out;
}

// matmulQuantized(dtype, w: Uint8Array, nOut, k, x: Float32Array, rows): Float32Array [rows, nOut]
Napi::Value MatmulQuantized(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const DType t = dtype_arg(info, 0);
  if (!info[1].IsTypedArray() || !info[4].IsTypedArray()) throw Napi::TypeError::New(env, "w must be a Uint8Array, x a Float32Array");
  Napi::Uint8Array w = info[1].As<Napi::Uint8Array>();
  const int64_t n_out = count_arg(info, 2, "nOut"), k = count_arg(info, 3, "k"), rows = count_arg(info, 5, "rows");
  Napi::Float32Array x = info[4].As<Napi::Float32Array>();
  check_cols(env, t, k);
  if (w.ByteLength() != static_cast<size_t>(n_out) * dtype_row_bytes(t, k)) throw Napi::RangeError::New(env, "w does not hold nOut rows of k");
  if (x.ElementLength() != static_cast<size_t>(rows * k)) throw Napi::RangeError::New(env, "x does not hold rows x k values");
  Tensor placed = cpu().place_weight(Tensor{w.Data(), t, n_out, k}, Backend::WeightUse::Matmul);
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(rows * n_out));
  cpu().matmul(out.Data(), x.Data(), static_cast<int>(rows), placed, nullptr);
  return out;
}

// matmulMany(weights: {dtype, w: Uint8Array, nOut}[], k, x: Float32Array, rows): Float32Array[]
// ([rows, nOut] each), by one matmul_multi call (a layer's q, k and v go through one).
Napi::Value MatmulMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) throw Napi::TypeError::New(env, "weights must be a non-empty array");
  if (!info[2].IsTypedArray()) throw Napi::TypeError::New(env, "x must be a Float32Array");
  const Napi::Array list = info[0].As<Napi::Array>();
  const int64_t k = count_arg(info, 1, "k"), rows = count_arg(info, 3, "rows");
  Napi::Float32Array x = info[2].As<Napi::Float32Array>();
  if (x.ElementLength() != static_cast<size_t>(rows * k)) throw Napi::RangeError::New(env, "x does not hold rows x k values");
  std::vector<Tensor> ws;
  std::vector<Napi::Float32Array> outs;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    if (!list.Get(i).IsObject()) throw Napi::TypeError::New(env, "weights[i] must be an object {dtype, w, nOut}");
    const Napi::Object o = list.Get(i).As<Napi::Object>();
    DType t;
    if (!o.Get("dtype").IsString() || !parse_dtype(o.Get("dtype").As<Napi::String>().Utf8Value(), &t))
      throw Napi::TypeError::New(env, "weights[i].dtype must be a weight type name such as 'q8_0'");
    if (!o.Get("w").IsTypedArray() || !o.Get("nOut").IsNumber()) throw Napi::TypeError::New(env, "weights[i] must have w and nOut");
    Napi::Uint8Array w = o.Get("w").As<Napi::Uint8Array>();
    const int64_t n_out = o.Get("nOut").As<Napi::Number>().Int64Value();
    check_cols(env, t, k);
    if (n_out <= 0 || w.ByteLength() != static_cast<size_t>(n_out) * dtype_row_bytes(t, k))
      throw Napi::RangeError::New(env, "weights[i].w does not hold nOut rows of k");
    ws.push_back(cpu().place_weight(Tensor{w.Data(), t, n_out, k}, Backend::WeightUse::Matmul));
    outs.push_back(Napi::Float32Array::New(env, static_cast<size_t>(rows * n_out)));
  }
  std::vector<float*> out_ptrs;
  std::vector<const float*> biases(ws.size(), nullptr);
  for (auto& o : outs) out_ptrs.push_back(o.Data());
  cpu().matmul_multi(out_ptrs.data(), x.Data(), static_cast<int>(rows), ws.data(), biases.data(), static_cast<int>(ws.size()));
  Napi::Array result = Napi::Array::New(env, outs.size());
  for (uint32_t i = 0; i < outs.size(); ++i) result.Set(i, outs[i]);
  return result;
}

}  // namespace kc::addon
