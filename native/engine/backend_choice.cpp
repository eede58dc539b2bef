// Which backend runs the engine: what the caller asked for (or KCACHE_BACKEND), then CUDA when
// this build has it, a device is visible and it can run the model's shapes, else the CPU.
#include <cstdlib>
#include <stdexcept>

#include "engine_impl.h"
#include "kcache/cpu_backend.h"
#ifdef KC_HAVE_CUDA
#include "kcache/cuda_backend.h"
#endif

namespace kc {

std::unique_ptr<Backend> choose_backend(std::string want, const ModelConfig& cfg, const std::vector<DType>& weight_types, DType kv_dtype,
                                        int threads, std::string* note) {
  const char* env = std::getenv("KCACHE_BACKEND");
  if (want == "auto" && env && *env) want = env;
  if (want != "auto" && want != "cpu" && want != "cuda") throw std::runtime_error("backend must be auto, cpu or cuda, got '" + want + "'");
  if (want == "cpu") {
    *note = "cpu: requested";
    return make_cpu_backend(threads);
  }
#ifdef KC_HAVE_CUDA
  std::string device;
  if (cuda_device_available(&device)) {
    std::unique_ptr<Backend> b = make_cuda_backend(0);
    std::string why;
    bool ok = b->supports_model(cfg, &why);
    for (DType t : weight_types) ok = ok && b->supports_weights(t, &why);
    ok = ok && b->supports_kv(kv_dtype, &why);
    if (ok) {
      *note = "cuda: " + device;
      return b;
    }
    if (want == "cuda") throw std::runtime_error(why);
    *note = "cpu: the CUDA backend cannot run this model (" + why + ")";
    return make_cpu_backend(threads);
  }
  if (want == "cuda") throw std::runtime_error("backend cuda: " + device);
  *note = "cpu: " + device;
#else
  if (want == "cuda") throw std::runtime_error("backend cuda: this build has no CUDA backend (nvcc was not found at build time)");
  (void)cfg;
  (void)weight_types;
  (void)kv_dtype;
  *note = "cpu: built without CUDA";
#endif
  return make_cpu_backend(threads);
}

}  // namespace kc
