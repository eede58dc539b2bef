#include <cstring>

#include "kcache/types.h"

namespace kc {

namespace {

struct Info {
  DType t;
  const char* name;
  int block;
  size_t block_bytes;
};

// Block sizes from GGML's block structs: e.g. block_q8_0 = { f16 d; int8 qs[32] } is 34 bytes,
// block_q4_K = { f16 d, dmin; u8 scales[12]; u8 qs[128] } is 144.
constexpr Info kInfo[] = {
    {DType::F32, "f32", 1, 4},      {DType::BF16, "bf16", 1, 2},    {DType::F16, "f16", 1, 2},
    {DType::Q8_0, "q8_0", 32, 34},  {DType::Q4_0, "q4_0", 32, 18},  {DType::Q4_1, "q4_1", 32, 20},
    {DType::Q5_0, "q5_0", 32, 22},  {DType::Q5_1, "q5_1", 32, 24},  {DType::Q4_K, "q4_k", 256, 144},
    {DType::Q5_K, "q5_k", 256, 176}, {DType::Q6_K, "q6_k", 256, 210},
};

const Info& info(DType t) {
  for (const Info& i : kInfo)
    if (i.t == t) return i;
  return kInfo[0];
}

}  // namespace

int dtype_block(DType t) { return info(t).block; }
size_t dtype_block_bytes(DType t) { return info(t).block_bytes; }
const char* dtype_name(DType t) { return info(t).name; }

bool parse_dtype(const std::string& s, DType* out) {
  std::string l;
  for (char c : s) l += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (l == "fp32") l = "f32";
  if (l == "fp16") l = "f16";
  for (const Info& i : kInfo) {
    if (l == i.name) {
      *out = i.t;
      return true;
    }
  }
  return false;
}

float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;               // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;              // overflow (>= 65520) -> inf
  if (abs < 0x38800000u) {                                     // subnormal half or zero
    if (abs < 0x33000000u) return sign;                        // < 2^-25 rounds to zero
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;                            // 14 - (e - 127) + 13 - ... (see below)
    // value = m * 2^(e-150); half subnormal unit = 2^-24 -> mantissa = m >> (126 - e)
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return sign | static_cast<uint16_t>(h);
  }
  uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

}  // namespace kc
