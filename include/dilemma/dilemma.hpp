#pragma once
// dilemma: joint placement and quantization of OPT language models across small
// edge servers, and the runtime that executes the plan.
//
// The data flow, header by header:
//   checkpoint (io/safetensors, model/checkpoint)
//     → teacher model, a sequence of stages (model/opt_model, model/stage)
//     → text in and out (text/bpe_tokenizer, generation/generate)
//     → quality of a model on SQuAD (eval/perplexity), of a quantized student
//       against its teacher (eval/teacher_student), calibration
//       (quant/calibration/calibrate) and per-weight errors (quant/weight_error)
//     → per-stage profiles measured on this machine (cost/profiler)
//     → a plan: the cluster (edge/cluster), each stage's costs per server and
//       format (cost/model_costs, cost/rtn_errors, cost/evaluate), the ILP
//       solved by CBC or a baseline (plan/solve, plan/baselines), plan.json
//     → a plan run across nodes, measured vs predicted (runtime/run; the Open
//       MPI transport, runtime/mpi_transport.hpp, is left out: it needs <mpi.h>)

#include "dilemma/error.hpp"
#include "dilemma/version.hpp"

#include "dilemma/io/dtype.hpp"
#include "dilemma/io/mapped_file.hpp"
#include "dilemma/io/npy.hpp"
#include "dilemma/io/safetensors.hpp"

#include "dilemma/quant/format_assignment.hpp"

#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/quantized_checkpoint.hpp"
#include "dilemma/model/quantized_layout.hpp"
#include "dilemma/model/random_model.hpp"
#include "dilemma/model/run_context.hpp"
#include "dilemma/model/stage.hpp"

#include "dilemma/text/bpe_tokenizer.hpp"

#include "dilemma/generation/generate.hpp"
#include "dilemma/generation/sampler.hpp"

#include "dilemma/eval/perplexity.hpp"
#include "dilemma/eval/squad.hpp"
#include "dilemma/eval/teacher_student.hpp"

#include "dilemma/quant/calibration/calibrate.hpp"
#include "dilemma/quant/weight_error.hpp"

#include "dilemma/edge/cluster.hpp"
#include "dilemma/edge/units.hpp"

#include "dilemma/cost/error_table.hpp"
#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/instance.hpp"
#include "dilemma/cost/messages.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/cost/profile.hpp"
#include "dilemma/cost/profiler.hpp"
#include "dilemma/cost/rtn_errors.hpp"
#include "dilemma/cost/stage_work.hpp"

#include "dilemma/ilp/cbc_solver.hpp"
#include "dilemma/ilp/model.hpp"

#include "dilemma/plan/annealing.hpp"
#include "dilemma/plan/baselines.hpp"
#include "dilemma/plan/brute_force.hpp"
#include "dilemma/plan/feasibility.hpp"
#include "dilemma/plan/formulation.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/plan/problem.hpp"
#include "dilemma/plan/program_values.hpp"
#include "dilemma/plan/solve.hpp"

#include "dilemma/runtime/client.hpp"
#include "dilemma/runtime/deployment.hpp"
#include "dilemma/runtime/emulated_network.hpp"
#include "dilemma/runtime/fault.hpp"
#include "dilemma/runtime/message.hpp"
#include "dilemma/runtime/node.hpp"
#include "dilemma/runtime/prediction.hpp"
#include "dilemma/runtime/report.hpp"
#include "dilemma/runtime/run.hpp"
#include "dilemma/runtime/transport.hpp"
