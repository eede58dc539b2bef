// CPU vs CUDA conformance, op by op and whole model, as a native program (no Node needed):
//   kcache_conformance [--stories path/to/stories260K.bin]
// Every op runs on both backends on fresh random inputs (never zeros) into outputs poisoned
// with NaN first; results are compared as max|cuda - cpu| / max|cpu| (fp32 paths within 1e-5,
// paths that round activations to bf16/f16 within 1e-2; the KV cache store byte for byte in
// every KV dtype). Then whole-model logits, CUDA engine vs CPU engine, on stories260K and dummy
// models, in full and KCache attention, with each KV cache dtype. Every CUDA call
// is checked inside the backend (a failure throws and fails the run). Exit status 0 only when
// every check passes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kcache/cpu_backend.h"
#include "kcache/cuda_backend.h"
#include "kcache/engine.h"
#include "kcache/quant.h"
#include "models.h"

using namespace kc;

namespace {

int failures = 0, checks = 0;
std::mt19937 rng(20261126);

std::vector<float> randu(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// One step's logits (every output row's).
std::vector<float> step_logits(Engine& e, const StepInput& in) {
  std::vector<float> out(in.output_rows.size() * static_cast<size_t>(e.config().vocab_size));
  e.step(in, out.data());
  return out;
}

void check(const std::string& name, const std::vector<float>& cpu, const std::vector<float>& gpu, double tol) {
  ++checks;
  double num = 0.0, den = 0.0;
  bool bad = cpu.size() != gpu.size();
  for (size_t i = 0; i < cpu.size() && !bad; ++i) {
    if (!std::isfinite(gpu[i]) || !std::isfinite(cpu[i])) bad = true;
    num = std::max(num, std::fabs(static_cast<double>(gpu[i]) - cpu[i]));
    den = std::max(den, std::fabs(static_cast<double>(cpu[i])));
  }
  if (den == 0.0) bad = true;  // an all-zero reference compares nothing
  const double err = bad ? std::numeric_limits<double>::infinity() : num / den;
  const bool ok = !bad && err <= tol;
  if (!ok) ++failures;
  std::printf("%-4s %-64s max rel err %.3e (tol %.0e)%s\n", ok ? "ok" : "FAIL", name.c_str(), err, tol,
              bad ? " [non-finite, size mismatch or all-zero reference]" : "");
}

// A buffer on one backend, with helpers to fill, poison and read it.
struct Buf {
  Backend* b;
  void* p;
  size_t bytes;
  Buf(Backend& be, size_t n_bytes) : b(&be), p(be.alloc(n_bytes)), bytes(n_bytes) {}
  Buf(const Buf&) = delete;
  ~Buf() { b->release(p); }
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
  template <typename T>
  void set(const std::vector<T>& v) { b->upload(p, v.data(), v.size() * sizeof(T)); }
  void poison() {
    std::vector<float> nan(bytes / sizeof(float), std::numeric_limits<float>::quiet_NaN());
    b->upload(p, nan.data(), nan.size() * sizeof(float));
  }
  std::vector<uint8_t> bytes_of() const {
    std::vector<uint8_t> v(bytes);
    b->download(v.data(), p, bytes);
    b->synchronize();
    return v;
  }
  std::vector<float> get(size_t n) const {
    std::vector<float> v(n);
    b->download(v.data(), p, n * sizeof(float));
    b->synchronize();
    return v;
  }
};

// Host-side weight of a dtype, from f32 values.
struct HostWeight {
  std::vector<uint16_t> half;
  std::vector<float> f32;
  Tensor t;
  HostWeight(const std::vector<float>& v, DType dt, int64_t rows, int64_t cols) {
    t.dtype = dt, t.rows = rows, t.cols = cols;
    if (dt == DType::F32) {
      f32 = v;
      t.data = f32.data();
    } else {
      half.resize(v.size());
      for (size_t i = 0; i < v.size(); ++i) half[i] = dt == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      t.data = half.data();
    }
  }
};

const char* dtn(DType d) { return d == DType::F32 ? "f32" : d == DType::BF16 ? "bf16" : "f16"; }

constexpr DType kKvDtypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0};

// Rows of `cols` f32 values stored as a KV cache dtype (the CPU's encoder).
std::vector<uint8_t> encode_rows(const std::vector<float>& v, DType t, int cols) {
  const size_t rb = dtype_row_bytes(t, cols), rows = v.size() / cols;
  std::vector<uint8_t> out(rows * rb);
  for (size_t r = 0; r < rows; ++r) encode_row(t, v.data() + r * cols, out.data() + r * rb, cols);
  return out;
}

void check_bytes(const std::string& name, const std::vector<uint8_t>& cpu, const std::vector<uint8_t>& gpu) {
  ++checks;
  size_t diff = cpu.size() == gpu.size() ? 0 : 1;
  for (size_t i = 0; i < cpu.size() && i < gpu.size(); ++i) diff += cpu[i] != gpu[i];
  if (diff) ++failures;
  std::printf("%-4s %-64s %zu of %zu bytes differ\n", diff ? "FAIL" : "ok", name.c_str(), diff, cpu.size());
}

void test_elementwise(Backend& C, Backend& G) {
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    const int vocab = 300, dim = 96, n = 7;
    HostWeight w(randu(static_cast<size_t>(vocab) * dim), dt, vocab, dim);
    const Tensor tc = C.place_weight(w.t, Backend::WeightUse::Rows), tg = G.place_weight(w.t, Backend::WeightUse::Rows);
    std::vector<int32_t> tok = {0, 299, 17, 17, 150, 3, 42};
    Buf tokc(C, n * 4), tokg(G, n * 4), oc(C, n * dim * 4), og(G, n * dim * 4);
    tokc.set(tok), tokg.set(tok), oc.poison(), og.poison();
    C.embedding(oc.as<float>(), tc, tokc.as<int32_t>(), n);
    G.embedding(og.as<float>(), tg, tokg.as<int32_t>(), n);
    check(std::string("embedding ") + dtn(dt), oc.get(n * dim), og.get(n * dim), 1e-5);
  }
  {
    const int rows = 5, dim = 576;
    auto x = randu(rows * dim), w = randu(dim, 0.5f, 1.5f);
    Buf xc(C, x.size() * 4), xg(G, x.size() * 4), wc(C, dim * 4), wg(G, dim * 4), oc(C, x.size() * 4), og(G, x.size() * 4);
    xc.set(x), xg.set(x), wc.set(w), wg.set(w), oc.poison(), og.poison();
    C.rmsnorm(oc.as<float>(), xc.as<float>(), wc.as<float>(), rows, dim, 1e-5f);
    G.rmsnorm(og.as<float>(), xg.as<float>(), wg.as<float>(), rows, dim, 1e-5f);
    check("rmsnorm 5x576", oc.get(x.size()), og.get(x.size()), 1e-5);
    // the fused residual add + norm, writing the norm over y
    auto y = randu(rows * dim);
    Buf yc(C, y.size() * 4), yg(G, y.size() * 4);
    yc.set(y), yg.set(y);
    C.add_rmsnorm(xc.as<float>(), yc.as<float>(), yc.as<float>(), wc.as<float>(), rows, dim, 1e-5f);
    G.add_rmsnorm(xg.as<float>(), yg.as<float>(), yg.as<float>(), wg.as<float>(), rows, dim, 1e-5f);
    check("add_rmsnorm: x + y", xc.get(x.size()), xg.get(x.size()), 1e-6);
    check("add_rmsnorm: norm written over y", yc.get(y.size()), yg.get(y.size()), 1e-5);
  }
  for (int style = 0; style < 3; ++style) {
    const int rows = 7, heads = 4, hd = 64;
    RopeParams p;
    p.style = style == 0 ? RopeStyle::Interleaved : RopeStyle::HalfSplit;
    if (style == 2) p.llama3_factor = 8.0, p.theta = 500000.0;
    auto x = randu(rows * heads * hd);
    std::vector<int32_t> pos = {0, 1, 15, 16, 511, 4097, 30000};
    Buf xc(C, x.size() * 4), xg(G, x.size() * 4), pc(C, rows * 4), pg(G, rows * 4);
    xc.set(x), xg.set(x), pc.set(pos), pg.set(pos);
    C.rope(xc.as<float>(), pc.as<int32_t>(), rows, heads, hd, p);
    G.rope(xg.as<float>(), pg.as<int32_t>(), rows, heads, hd, p);
    check(std::string("rope ") + (style == 0 ? "interleaved" : style == 1 ? "half-split" : "half-split llama3"), xc.get(x.size()),
          xg.get(x.size()), 1e-5);
  }
  {
    const size_t n = 3 * 1536 + 5;
    auto g = randu(n, -4, 4), u = randu(n);
    Buf gc(C, n * 4), gg(G, n * 4), uc(C, n * 4), ug(G, n * 4), oc(C, n * 4), og(G, n * 4);
    gc.set(g), gg.set(g), uc.set(u), ug.set(u), oc.poison(), og.poison();
    C.swiglu(oc.as<float>(), gc.as<float>(), uc.as<float>(), n);
    G.swiglu(og.as<float>(), gg.as<float>(), ug.as<float>(), n);
    check("swiglu", oc.get(n), og.get(n), 1e-5);
    C.add(gc.as<float>(), uc.as<float>(), n);
    G.add(gg.as<float>(), ug.as<float>(), n);
    check("add", gc.get(n), gg.get(n), 1e-6);
  }
  {
    const int rows = 9, dim = 40, n = 4;
    auto x = randu(rows * dim);
    std::vector<int32_t> idx = {8, 0, 3, 3};
    Buf xc(C, x.size() * 4), xg(G, x.size() * 4), ic(C, n * 4), ig(G, n * 4), oc(C, n * dim * 4), og(G, n * dim * 4);
    xc.set(x), xg.set(x), ic.set(idx), ig.set(idx), oc.poison(), og.poison();
    C.get_rows(oc.as<float>(), xc.as<float>(), ic.as<int32_t>(), n, dim);
    G.get_rows(og.as<float>(), xg.as<float>(), ig.as<int32_t>(), n, dim);
    check("get_rows", oc.get(n * dim), og.get(n * dim), 0.0);
  }
  for (DType kvt : kKvDtypes) {
    const int slots_n = 64, kv = 128, rows = 5;
    const auto kc0 = encode_rows(randu(slots_n * kv), kvt, kv), vc0 = encode_rows(randu(slots_n * kv), kvt, kv);
    auto k = randu(rows * kv), v = randu(rows * kv);
    std::vector<int32_t> slots = {63, 0, 17, 18, 40};
    Buf kcc(C, kc0.size()), kcg(G, kc0.size()), vcc(C, vc0.size()), vcg(G, vc0.size());
    Buf kC(C, k.size() * 4), kG(G, k.size() * 4), vC(C, v.size() * 4), vG(G, v.size() * 4), sc(C, rows * 4), sg(G, rows * 4);
    kcc.set(kc0), kcg.set(kc0), vcc.set(vc0), vcg.set(vc0), kC.set(k), kG.set(k), vC.set(v), vG.set(v), sc.set(slots), sg.set(slots);
    C.kv_store(kcc.p, vcc.p, kC.as<float>(), vC.as<float>(), sc.as<int32_t>(), rows, kv, kvt);
    G.kv_store(kcg.p, vcg.p, kG.as<float>(), vG.as<float>(), sg.as<int32_t>(), rows, kv, kvt);
    // the stored bytes themselves: both backends round and quantize identically
    check_bytes(std::string("kv_store K ") + dtype_name(kvt), kcc.bytes_of(), kcg.bytes_of());
    check_bytes(std::string("kv_store V ") + dtype_name(kvt), vcc.bytes_of(), vcg.bytes_of());
  }
}

void test_matmul(Backend& C, Backend& G, const char* label) {
  struct Shape {
    int n, k;
  };
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    for (Shape s : {Shape{576, 576}, Shape{1536, 576}, Shape{576, 1536}, Shape{64, 172}, Shape{301, 36}, Shape{2048, 2048}}) {
      HostWeight w(randu(static_cast<size_t>(s.n) * s.k, -0.1f, 0.1f), dt, s.n, s.k);
      const Tensor tc = C.place_weight(w.t, Backend::WeightUse::Matmul), tg = G.place_weight(w.t, Backend::WeightUse::Matmul);
      auto bias = randu(s.n);
      Buf bc(C, s.n * 4), bg(G, s.n * 4);
      bc.set(bias), bg.set(bias);
      for (int rows : {1, 3, 8, 9, 64, 130}) {
        auto x = randu(static_cast<size_t>(rows) * s.k);
        Buf xc(C, x.size() * 4), xg(G, x.size() * 4), oc(C, static_cast<size_t>(rows) * s.n * 4), og(G, static_cast<size_t>(rows) * s.n * 4);
        xc.set(x), xg.set(x), oc.poison(), og.poison();
        const bool with_bias = rows % 2 == 1;
        C.matmul(oc.as<float>(), xc.as<float>(), rows, tc, with_bias ? bc.as<float>() : nullptr);
        G.matmul(og.as<float>(), xg.as<float>(), rows, tg, with_bias ? bg.as<float>() : nullptr);
        // GEMV (<= 8 rows) keeps x in fp32; the tensor-core GEMM rounds x to the weight dtype
        const double tol = (dt == DType::F32 || rows <= 8) ? 1e-5 : 1e-2;
        char name[128];
        std::snprintf(name, sizeof name, "matmul %s %s %dx%d x %d rows%s", label, dtn(dt), s.n, s.k, rows, with_bias ? " +bias" : "");
        check(name, oc.get(static_cast<size_t>(rows) * s.n), og.get(static_cast<size_t>(rows) * s.n), tol);
      }
    }
  }
}

// q/k/v-style: three matrices of one x in one call, against the CPU's three matmuls.
void test_matmul_multi(Backend& C, Backend& G) {
  for (DType dt : {DType::F32, DType::BF16}) {
    const int K = 576, ns[3] = {576, 192, 192};
    std::vector<HostWeight> hw;
    std::vector<Tensor> tc, tg;
    for (int n : ns) hw.emplace_back(randu(static_cast<size_t>(n) * K, -0.1f, 0.1f), dt, n, K);
    for (auto& w : hw) {
      tc.push_back(C.place_weight(w.t, Backend::WeightUse::Matmul));
      tg.push_back(G.place_weight(w.t, Backend::WeightUse::Matmul));
    }
    for (int rows : {1, 5, 12}) {
      auto x = randu(static_cast<size_t>(rows) * K);
      auto bias = randu(192);
      Buf xc(C, x.size() * 4), xg(G, x.size() * 4), bc(C, 192 * 4), bg(G, 192 * 4);
      xc.set(x), xg.set(x), bc.set(bias), bg.set(bias);
      std::vector<std::unique_ptr<Buf>> oc, og;
      for (int n : ns) {
        oc.push_back(std::make_unique<Buf>(C, static_cast<size_t>(rows) * n * 4));
        og.push_back(std::make_unique<Buf>(G, static_cast<size_t>(rows) * n * 4));
        oc.back()->poison(), og.back()->poison();
      }
      float* outs_c[3] = {oc[0]->as<float>(), oc[1]->as<float>(), oc[2]->as<float>()};
      float* outs_g[3] = {og[0]->as<float>(), og[1]->as<float>(), og[2]->as<float>()};
      const float* bias_c[3] = {nullptr, bc.as<float>(), nullptr};
      const float* bias_g[3] = {nullptr, bg.as<float>(), nullptr};
      for (int i = 0; i < 3; ++i) C.matmul(outs_c[i], xc.as<float>(), rows, tc[i], bias_c[i]);
      G.matmul_multi(outs_g, xg.as<float>(), rows, tg.data(), bias_g, 3);
      for (int i = 0; i < 3; ++i) {
        char name[128];
        std::snprintf(name, sizeof name, "matmul_multi %s segment %d (%dx%d) x %d rows", dtn(dt), i, ns[i], K, rows);
        check(name, oc[i]->get(static_cast<size_t>(rows) * ns[i]), og[i]->get(static_cast<size_t>(rows) * ns[i]),
              dt == DType::F32 || rows <= 8 ? 1e-5 : 1e-2);
      }
    }
  }
}

// A paged cache with three sequences in shuffled blocks, rows mixing decode rows and a prefill chunk.
void test_attention(Backend& C, Backend& G, DType kvt) {
  struct Case {
    int heads, kv_heads, hd;
  };
  for (Case cs : {Case{8, 4, 8}, Case{9, 3, 64}, Case{32, 8, 64}, Case{4, 4, 128}}) {
    if ((cs.kv_heads * cs.hd) % dtype_block(kvt) != 0) continue;  // q8_0 rows are whole blocks of 32
    const int bs = 16;
    const std::vector<int> ctx = {37, 300, 2100};  // context of each sequence's last row
    std::vector<int32_t> tables, offsets;
    int blocks = 0;
    for (int c : ctx) blocks += (c + bs - 1) / bs;
    std::vector<int32_t> perm(blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    int used = 0;
    for (int c : ctx) {
      offsets.push_back(static_cast<int32_t>(tables.size()));
      for (int i = 0; i < (c + bs - 1) / bs; ++i) tables.push_back(perm[used++]);
    }
    // rows: seq 0 decodes at 36; seq 1 has a 5-row prefill chunk ending at 299; seq 2 decodes at 2099
    std::vector<int32_t> row_pos = {36, 295, 296, 297, 298, 299, 2099}, row_seq = {0, 1, 1, 1, 1, 1, 2};
    const int rows = static_cast<int>(row_pos.size()), kv_dim = cs.kv_heads * cs.hd, q_dim = cs.heads * cs.hd;
    const size_t cache_n = static_cast<size_t>(blocks) * bs * kv_dim;
    const auto kcache = encode_rows(randu(cache_n), kvt, kv_dim), vcache = encode_rows(randu(cache_n), kvt, kv_dim);
    const size_t cache_bytes = kcache.size();
    auto q = randu(static_cast<size_t>(rows) * q_dim, -2, 2);
    Buf kc(C, cache_bytes), kg(G, cache_bytes), vc(C, cache_bytes), vg(G, cache_bytes), qc(C, q.size() * 4), qg(G, q.size() * 4);
    Buf pc(C, rows * 4), pg(G, rows * 4), sc(C, rows * 4), sg(G, rows * 4), tc(C, tables.size() * 4), tg(G, tables.size() * 4);
    Buf oc(C, 3 * 4), og(G, 3 * 4), outc(C, q.size() * 4), outg(G, q.size() * 4), nc(C, rows * 4), ng(G, rows * 4);
    kc.set(kcache), kg.set(kcache), vc.set(vcache), vg.set(vcache), qc.set(q), qg.set(q), pc.set(row_pos), pg.set(row_pos);
    sc.set(row_seq), sg.set(row_seq), tc.set(tables), tg.set(tables), oc.set(offsets), og.set(offsets);
    // the V tier of KCache lives in host memory on both backends
    void* vh_c = C.alloc_host(cache_bytes);
    void* vh_g = G.alloc_host(cache_bytes);
    std::memcpy(vh_c, vcache.data(), cache_bytes);
    std::memcpy(vh_g, vcache.data(), cache_bytes);
    auto batch = [&](const Buf& p, const Buf& s, const Buf& t, const Buf& o, const Buf* topn) {
      AttentionBatch b;
      b.rows = rows, b.n_heads = cs.heads, b.n_kv_heads = cs.kv_heads, b.head_dim = cs.hd, b.block_size = bs;
      b.scale = 1.0f / std::sqrt(static_cast<float>(cs.hd));
      b.row_pos = p.as<int32_t>(), b.row_seq = s.as<int32_t>(), b.block_tables = t.as<int32_t>(), b.table_offset = o.as<int32_t>();
      b.max_context = 2100;
      b.kv_dtype = kvt;
      b.row_topn = topn ? topn->as<int32_t>() : nullptr;
      return b;
    };
    char name[160];
    outc.poison(), outg.poison();
    C.attention(outc.as<float>(), qc.as<float>(), kc.p, vc.p, batch(pc, sc, tc, oc, nullptr));
    G.attention(outg.as<float>(), qg.as<float>(), kg.p, vg.p, batch(pg, sg, tg, og, nullptr));
    std::snprintf(name, sizeof name, "attention %s KV heads %d/%d hd %d (decode + prefill rows)", dtype_name(kvt), cs.heads, cs.kv_heads,
                  cs.hd);
    check(name, outc.get(q.size()), outg.get(q.size()), 1e-5);
    for (int renorm = 0; renorm < 2; ++renorm) {
      for (int n : {5, 64}) {
        // decode rows use top-N (the prefill rows and an N above seq 0's context attend to everything)
        std::vector<int32_t> topn = {n, 0, 0, 0, 0, 0, n};
        nc.set(topn), ng.set(topn), outc.poison(), outg.poison();
        AttentionBatch bc = batch(pc, sc, tc, oc, &nc), bg = batch(pg, sg, tg, og, &ng);
        bc.max_topn = bg.max_topn = n;
        bc.topn_renormalize = bg.topn_renormalize = renorm == 1;
        C.kcache_attention(outc.as<float>(), qc.as<float>(), kc.p, vh_c, bc);
        G.kcache_attention(outg.as<float>(), qg.as<float>(), kg.p, vh_g, bg);
        std::snprintf(name, sizeof name, "kcache_attention %s KV heads %d/%d hd %d N=%d%s", dtype_name(kvt), cs.heads, cs.kv_heads, cs.hd,
                      n, renorm ? " renormalised" : "");
        check(name, outc.get(q.size()), outg.get(q.size()), 1e-5);
      }
    }
    C.release_host(vh_c);
    G.release_host(vh_g);
  }
}

// Whole-model logits: a prefill chunk with every position's logits, then greedy decode steps.
void test_model(const std::string& label, EngineOptions o, double tol, int prompt = 40, int decode = 16) {
  o.num_blocks = 16;
  o.block_size = 16;
  o.threads = 0;
  o.backend = "cpu";
  auto cpu = Engine::create(o);
  o.backend = "cuda";
  auto gpu = Engine::create(o);
  StepInput in;
  std::uniform_int_distribution<int> tok(3, std::min(o.config.vocab_size - 1, 500));
  for (int i = 0; i < prompt; ++i) {
    in.tokens.push_back(i == 0 ? 1 : tok(rng));
    in.positions.push_back(i);
    in.row_seq.push_back(0);
    in.output_rows.push_back(i);
  }
  for (int b = 0; b < o.num_blocks; ++b) in.block_tables.push_back(b);
  in.table_offset = {0};
  in.table_length = {o.num_blocks};
  std::vector<float> lc = step_logits(*cpu, in), lg = step_logits(*gpu, in);
  check(label + " prefill logits (" + std::to_string(prompt) + " positions)", lc, lg, tol);
  double worst = 0.0;
  int agree = 0;
  const int V = o.config.vocab_size;
  for (int s = 0; s < decode; ++s) {
    const float* last = lc.data() + (lc.size() - V);
    const int next = static_cast<int>(std::max_element(last, last + V) - last);
    const float* lastg = lg.data() + (lg.size() - V);
    agree += next == static_cast<int>(std::max_element(lastg, lastg + V) - lastg);
    in.tokens = {next};
    in.positions = {prompt + s};
    in.row_seq = {0};
    in.output_rows = {0};
    lc = step_logits(*cpu, in);
    lg = step_logits(*gpu, in);
    double num = 0, den = 0;
    for (int i = 0; i < V; ++i) {
      num = std::max(num, std::fabs(static_cast<double>(lg[i]) - lc[i]));
      den = std::max(den, std::fabs(static_cast<double>(lc[i])));
    }
    worst = std::max(worst, num / den);
  }
  ++checks;
  const bool ok = worst <= tol;
  if (!ok) ++failures;
  std::printf("%-4s %-64s max rel err %.3e (tol %.0e), greedy argmax agreement %d/%d\n", ok ? "ok" : "FAIL",
              (label + " decode logits (" + std::to_string(decode) + " steps)").c_str(), worst, tol, agree, decode);
  std::printf("     backends: %s | %s\n", cpu->backend_name(), gpu->backend_name());
}

// The offload host tier on the CUDA engine: a pool block copied to a pinned slot and back into
// another block (stream-ordered copies, no waits in between) arrives byte for byte.
void test_host_tier(const std::string& label, EngineOptions o) {
  o.num_blocks = 16;
  o.block_size = 16;
  o.backend = "cuda";
  auto e = Engine::create(o);
  o.host_tier_bytes = 4 * e->kv_bytes_per_block();
  e = Engine::create(o);
  e->fill_kv_random(7);
  const size_t bpb = e->kv_bytes_per_block();
  std::vector<uint8_t> a(bpb), b(bpb), slot(bpb), zeros(bpb, 0);
  e->read_block(3, a.data());
  const int32_t blocks_out[] = {3}, slots[] = {2}, blocks_in[] = {9};
  e->offload_to_host(blocks_out, slots, 1);
  e->reload_from_host(slots, blocks_in, 1);
  e->read_block(9, b.data());
  e->read_host_slots(slots, 1, slot.data());
  check_bytes(label + " host tier: block -> pinned slot -> block", a, b);
  check_bytes(label + " host tier: the slot's bytes", a, slot);
  e->write_host_slots(slots, 1, zeros.data());
  e->reload_from_host(slots, blocks_in, 1);
  e->read_block(9, b.data());
  check_bytes(label + " host tier: written slot -> block", zeros, b);
}

}  // namespace

int main(int argc, char** argv) {
  std::string stories = "../shared/models/stories260K.bin";
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--stories") == 0) stories = argv[i + 1];
  std::string device;
  if (!cuda_device_available(&device)) {
    std::printf("no CUDA device: %s\n", device.c_str());
    return 2;
  }
  std::printf("CUDA device: %s\n", device.c_str());
  try {
    auto C = make_cpu_backend(0);
    auto G = make_cuda_backend(0);
    test_elementwise(*C, *G);
    test_matmul(*C, *G, "tc");
    setenv("KCACHE_CUDA_TC", "0", 1);
    {
      auto G2 = make_cuda_backend(0);
      test_matmul(*C, *G2, "simt");
    }
    unsetenv("KCACHE_CUDA_TC");
    test_matmul_multi(*C, *G);
    for (DType kvt : kKvDtypes) test_attention(*C, *G, kvt);
    // the alternative unrolls the benchmark compares are checked too
    setenv("KCACHE_GEMV_UNROLL", "8", 1);
    setenv("KCACHE_ATTN_UNROLL", "8", 1);
    test_matmul(*C, *G, "tc unroll8");
    for (DType kvt : kKvDtypes) test_attention(*C, *G, kvt);
    unsetenv("KCACHE_GEMV_UNROLL");
    unsetenv("KCACHE_ATTN_UNROLL");

    test_model("stories260K f32", testing::llama2c_model(stories), 1e-4);
    EngineOptions kc = testing::llama2c_model(stories);
    kc.attention = AttentionMode::KCache;
    kc.kcache.topn = 8;
    kc.kcache.full_layers = 1;
    test_model("stories260K f32 KCache N=8 L=1", kc, 1e-4);
    test_model("dummy:tiny f32", testing::dummy_model("tiny", DType::F32), 1e-4);
    test_model("dummy:tiny bf16", testing::dummy_model("tiny", DType::BF16), 2e-2);
    test_model("dummy:smol135 bf16", testing::dummy_model("smol135", DType::BF16), 2e-2);
    test_model("dummy:smol135 f16", testing::dummy_model("smol135", DType::F16), 2e-2);
    test_host_tier("dummy:tiny f32", testing::dummy_model("tiny", DType::F32));
    {
      EngineOptions k = testing::llama2c_model(stories);
      k.attention = AttentionMode::KCache;
      k.kv_dtype = DType::F16;
      test_host_tier("stories260K KCache f16 KV", k);
    }
    // the KV cache dtypes, whole model, in full and KCache attention: both backends round K and V
    // the same way, but a value that lands on a rounding boundary after differently ordered f32
    // sums may round to a neighbour (one f16/bf16 ulp, one q8_0 step), hence 2e-2
    for (DType kvt : {DType::F16, DType::BF16, DType::Q8_0}) {
      EngineOptions o = testing::dummy_model("smol135", DType::BF16);
      o.kv_dtype = kvt;
      test_model(std::string("dummy:smol135 bf16, KV ") + dtype_name(kvt), o, 2e-2);
      EngineOptions s = testing::llama2c_model(stories);
      s.kv_dtype = kvt;
      test_model(std::string("stories260K f32, KV ") + dtype_name(kvt), s, 2e-2);
      s.attention = AttentionMode::KCache;
      s.kcache.topn = 8;
      s.kcache.full_layers = 1;
      test_model(std::string("stories260K f32 KCache N=8 L=1, KV ") + dtype_name(kvt), s, 2e-2);
    }
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    return 1;
  }
  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
