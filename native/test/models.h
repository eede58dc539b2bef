// Model descriptions for the native programs (conformance test, GPU benchmark), the same ones
// packages/engine builds in TypeScript: a llama2.c checkpoint and the dummy presets.
#pragma once
#include <string>

#include "kcache/engine.h"

namespace kc::testing {

// A llama2.c "legacy" checkpoint (stories260K.bin): f32 weights mapped from the file.
EngineOptions llama2c_model(const std::string& path);

// dummy:<preset> with deterministic random weights: "tiny", "smol135" or "llama1b".
EngineOptions dummy_model(const std::string& preset, DType dtype, uint64_t seed = 1234);

}  // namespace kc::testing
