#pragma once
// Repeated timings reduced to median, min and max. The median is the headline
// because a shared machine adds noise in one direction only (a run is slowed
// down, never sped up); min and max show how much of it there was.

#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"

namespace dilemma::bench {

struct Summary {
  double median = 0;
  double min = 0;
  double max = 0;
  std::vector<double> samples;  // in measurement order
};

inline Summary summarize(std::vector<double> samples) {
  if (samples.empty()) dilemma::detail::fail("summarize(): no samples to summarize");
  std::vector<double> sorted = samples;
  std::ranges::sort(sorted);
  const std::size_t n = sorted.size();
  const double median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return {median, sorted.front(), sorted.back(), std::move(samples)};
}

inline void to_json(nlohmann::json& json, const Summary& summary) {
  json = {{"median", summary.median}, {"min", summary.min}, {"max", summary.max}, {"samples", summary.samples}};
}

}  // namespace dilemma::bench
