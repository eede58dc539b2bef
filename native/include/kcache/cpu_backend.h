#pragma once
#include <memory>

#include "kcache/backend.h"

namespace kc {
std::unique_ptr<Backend> make_cpu_backend(int threads);
}
