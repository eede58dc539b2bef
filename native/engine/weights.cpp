#include "weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "kcache/quant.h"

namespace kc {

MappedFile::MappedFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat (" + std::strerror(errno) + ")");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw std::runtime_error(path + ": cannot map (" + std::strerror(errno) + ")");
    }
    data_ = static_cast<uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

unsigned load_threads() { return std::max(1u, std::min(8u, std::thread::hardware_concurrency())); }

// f(begin, end) over [0, n) split across the loading threads.
template <typename F>
void parallel_rows(int64_t n, F f) {
  const int64_t per = (n + load_threads() - 1) / load_threads();
  std::vector<std::thread> ts;
  for (int64_t b = 0; b < n; b += per) ts.emplace_back([=] { f(b, std::min(n, b + per)); });
  for (auto& th : ts) th.join();
}

// Counter-based, so any element can be generated independently (and in parallel) and the
// values depend only on (seed, tensor name, index).
template <typename Store>
void fill_random(uint8_t* dst, size_t n, uint64_t key, float scale, float shift, Store store) {
  const unsigned n_threads = load_threads();
  const size_t chunk = (n + n_threads - 1) / n_threads;
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < n_threads; ++t) {
    ts.emplace_back([=] {
      const size_t b = t * chunk, e = std::min(n, b + chunk);
      for (size_t i = b; i < e; ++i) {
        const uint64_t r = splitmix64(key ^ (i * 0xd1b54a32d192ed03ull));
        const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        store(dst, i, shift + scale * (2.0f * u - 1.0f));
      }
    });
  }
  for (auto& th : ts) th.join();
}

}  // namespace

Tensor WeightStore::load(const TensorSpec& spec) {
  for (DType d : {spec.dtype, spec.quantize}) {
    if (spec.cols % dtype_block(d) != 0)
      throw std::runtime_error("tensor " + spec.name + ": " + std::to_string(spec.cols) + " columns are not a whole number of " +
                               dtype_name(d) + " blocks of " + std::to_string(dtype_block(d)));
  }
  if (spec.quantize != DType::F32) {
    if (dtype_quantized(spec.dtype) || !can_quantize(spec.quantize))
      throw std::runtime_error("tensor " + spec.name + ": cannot quantize " + dtype_name(spec.dtype) + " to " + dtype_name(spec.quantize));
    TensorSpec source = spec;
    source.quantize = DType::F32;
    const Tensor src = load(source);
    Tensor t = src;
    t.dtype = spec.quantize;
    owned_.emplace_back(t.bytes());
    uint8_t* dst = owned_.back().data();
    const size_t in_row = dtype_row_bytes(src.dtype, src.cols), out_row = dtype_row_bytes(t.dtype, t.cols);
    parallel_rows(src.rows, [&](int64_t r0, int64_t r1) {
      std::vector<float> row(static_cast<size_t>(src.cols));
      for (int64_t r = r0; r < r1; ++r) {
        dequantize_row(src.dtype, static_cast<const uint8_t*>(src.data) + r * in_row, row.data(), src.cols);
        quantize_row(t.dtype, row.data(), dst + r * out_row, src.cols);
      }
    });
    t.data = dst;
    if (spec.file.empty()) owned_.erase(owned_.end() - 2);  // the generated f32 source
    return t;
  }
  Tensor t;
  t.dtype = spec.dtype;
  t.rows = spec.rows;
  t.cols = spec.cols;
  const size_t bytes = t.bytes();
  if (!spec.file.empty()) {
    auto it = files_.find(spec.file);
    if (it == files_.end()) it = files_.emplace(spec.file, std::make_unique<MappedFile>(spec.file)).first;
    const MappedFile& f = *it->second;
    if (spec.offset + bytes > f.size()) {
      throw std::runtime_error(spec.file + ": truncated: tensor " + spec.name + " needs bytes " +
                               std::to_string(spec.offset) + ".." + std::to_string(spec.offset + bytes) +
                               " but the file has " + std::to_string(f.size()));
    }
    t.data = f.data() + spec.offset;
    return t;
  }
  owned_.emplace_back(bytes);
  uint8_t* dst = owned_.back().data();
  const size_t n = static_cast<size_t>(spec.rows * spec.cols);
  const uint64_t key = splitmix64(spec.seed) ^ fnv1a(spec.name);
  switch (spec.dtype) {
    default:
      throw std::runtime_error("tensor " + spec.name + ": random values are generated as f32, bf16 or f16, not " + dtype_name(spec.dtype));
    case DType::F32:
      fill_random(dst, n, key, spec.scale, spec.shift,
                  [](uint8_t* d, size_t i, float v) { reinterpret_cast<float*>(d)[i] = v; });
      break;
    case DType::BF16:
      fill_random(dst, n, key, spec.scale, spec.shift,
                  [](uint8_t* d, size_t i, float v) { reinterpret_cast<uint16_t*>(d)[i] = f32_to_bf16(v); });
      break;
    case DType::F16:
      fill_random(dst, n, key, spec.scale, spec.shift,
                  [](uint8_t* d, size_t i, float v) { reinterpret_cast<uint16_t*>(d)[i] = f32_to_f16(v); });
      break;
  }
  t.data = dst;
  return t;
}

}  // namespace kc
