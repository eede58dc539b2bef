// Holds weight memory: mapped files and generated (dummy) tensors. Lives as long as the engine.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kcache/engine.h"

namespace kc {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws std::runtime_error naming the file
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

class WeightStore {
 public:
  // Resolves a spec to host memory: maps its file or generates its values.
  Tensor load(const TensorSpec& spec);

 private:
  std::map<std::string, std::unique_ptr<MappedFile>> files_;
  std::vector<std::vector<uint8_t>> owned_;
};

}  // namespace kc
