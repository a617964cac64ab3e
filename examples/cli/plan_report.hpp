#pragma once
// Printing a plan for people, shared by `dilemma plan` and `dilemma demo`.

#include "dilemma/plan/plan.hpp"

namespace dilemma::cli {

// The plan's stages (server, format, memory, error, prefill and decode time),
// its predicted delays and transfers, and the servers' memory and load; or,
// without a plan, the reasons.
void print_plan(const plan::Plan& plan);

}  // namespace dilemma::cli
