#pragma once
// The planner study's sweeps, shared by plan_study (predictions from the
// clusters' specs) and measured_study (plans run on the emulated cluster):
// a point sets the accuracy budget's share of the all-int4 error, a factor on
// every link's bandwidth and a factor on every server's speed; a sweep walks
// one of them. What "speed" scales differs between the two programs (the
// specs' FLOP/s and memory bandwidth, or speed_factor), so each scales it
// itself; the links are scaled here.

#include <functional>
#include <string>
#include <vector>

#include "dilemma/edge/cluster.hpp"

namespace dilemma::study {

struct Point {
  double budget_share = 0.3;
  double bandwidth_factor = 1.0;
  double speed_factor = 1.0;
};

struct Sweep {
  std::string name;
  std::vector<double> values;
  std::function<Point(double)> point;
};

// `cluster` with every link's bandwidth, the default link's too, times `factor`.
inline edge::Cluster with_bandwidth_scaled(edge::Cluster cluster, double factor) {
  for (edge::LinkSpec& link : cluster.links) link.link.bandwidth *= factor;
  if (cluster.default_link) cluster.default_link->bandwidth *= factor;
  return cluster;
}

}  // namespace dilemma::study
