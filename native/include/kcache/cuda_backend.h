// The CUDA backend (native/cuda/), compiled when nvcc is present at build time (KC_HAVE_CUDA).
#pragma once
#include <memory>
#include <string>

#include "kcache/backend.h"

namespace kc {

// True when this build has the CUDA backend and a CUDA device is visible; `name` gets the
// device's name (or why there is none).
bool cuda_device_available(std::string* name);

// The CUDA backend on `device`; throws std::runtime_error when there is none.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);

// With KCACHE_CUDA_PROFILE set: GPU milliseconds and calls per op since the last reset.
std::string cuda_profile_report(bool reset);

}  // namespace kc
