#pragma once
// The keys and values one decoder layer has seen for one request. Each layer
// owns its cache because layers may run on different servers; a request that
// runs through the pipeline holds one cache per decoder-layer stage.

#include <algorithm>
#include <cstddef>

#include "dilemma/model/matrix.hpp"

namespace dilemma::model {

class KvCache {
 public:
  KvCache() = default;
  // `reserve_tokens` avoids regrowth when the context length is known ahead.
  KvCache(Eigen::Index hidden_size, Eigen::Index reserve_tokens)
      : keys_(reserve_tokens, hidden_size), values_(reserve_tokens, hidden_size) {}

  Eigen::Index size() const { return length_; }
  void clear() { length_ = 0; }

  // Appends rows for `keys.rows()` new tokens, growing geometrically.
  void append(const Matrix& keys, const Matrix& values) {
    const Eigen::Index needed = length_ + keys.rows();
    if (keys_.cols() != keys.cols()) {
      keys_.conservativeResize(keys_.rows(), keys.cols());
      values_.conservativeResize(values_.rows(), values.cols());
    }
    if (needed > keys_.rows()) {
      const Eigen::Index capacity = std::max<Eigen::Index>(needed, 2 * keys_.rows());
      keys_.conservativeResize(capacity, Eigen::NoChange);
      values_.conservativeResize(capacity, Eigen::NoChange);
    }
    keys_.middleRows(length_, keys.rows()) = keys;
    values_.middleRows(length_, values.rows()) = values;
    length_ = needed;
  }

  auto keys() const { return keys_.topRows(length_); }
  auto values() const { return values_.topRows(length_); }
  std::size_t bytes() const { return static_cast<std::size_t>(length_ * keys_.cols() * 2) * sizeof(float); }

 private:
  Matrix keys_;
  Matrix values_;
  Eigen::Index length_ = 0;
};

}  // namespace dilemma::model
