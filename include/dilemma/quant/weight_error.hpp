#pragma once
// How far a quantized weight Ŵ (the student) is from its float weight W (the
// teacher), the accuracy inputs of the planner:
//   weight difference  ‖W − Ŵ‖²_F, the paper's metric;
//   output error       (1/n) Σ_t ‖(W − Ŵ) x_t‖² = tr((W − Ŵ) H (W − Ŵ)ᵀ) / n
//                      over the n captured inputs x_t of the weight, H = Σ x xᵀ
//                      (calibration/input_statistics.hpp);
// with the teacher's own sizes ‖W‖²_F and (1/n) Σ_t ‖W x_t‖² to normalize by.
// MatrixError adds up, so a stage's error is the sum over its matrices, and
// dividing every stage's sums by the whole model's teacher sums gives errors
// that add up across stages (what the planner's budget Σ_s E[s][f] ≤ ε needs).

#include <string_view>

#include <Eigen/Core>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"
#include "dilemma/quant/calibration/input_statistics.hpp"
#include "dilemma/quant/quantized_matrix.hpp"

namespace dilemma::quant {

namespace detail {

inline void check_same_shape(const model::Matrix& teacher, const QuantizedMatrix& student, std::string_view name) {
  if (teacher.rows() != student.rows() || teacher.cols() != student.cols()) {
    dilemma::detail::fail("{}: the quantized weight is [{} × {}], the float weight [{} × {}]", name, student.rows(),
                          student.cols(), teacher.rows(), teacher.cols());
  }
}

// tr(E H Eᵀ) / n for E [rows × cols] in double.
inline double mean_quadratic_form(const Eigen::MatrixXd& e, const calibration::InputStatistics& inputs,
                                  std::string_view name) {
  calibration::detail::check_hessian(inputs.hessian(), e.cols(), name);
  if (inputs.samples() == 0) dilemma::detail::fail("{}: no calibration inputs were captured", name);
  return (e * inputs.hessian()).cwiseProduct(e).sum() / static_cast<double>(inputs.samples());
}

}  // namespace detail

// ‖W − Ŵ‖²_F.
inline double weight_difference(const model::Matrix& teacher, const QuantizedMatrix& student,
                                std::string_view name = "weight") {
  detail::check_same_shape(teacher, student, name);
  return (teacher.cast<double>() - student.dequantize().cast<double>()).squaredNorm();
}

// (1/n) Σ_t ‖(W − Ŵ) x_t‖² over the captured inputs.
inline double output_error(const model::Matrix& teacher, const QuantizedMatrix& student,
                           const calibration::InputStatistics& inputs, std::string_view name = "weight") {
  detail::check_same_shape(teacher, student, name);
  return detail::mean_quadratic_form(teacher.cast<double>() - student.dequantize().cast<double>(), inputs, name);
}

// (1/n) Σ_t ‖W x_t‖²: the teacher's output energy on the same inputs.
inline double output_energy(const model::Matrix& teacher, const calibration::InputStatistics& inputs,
                            std::string_view name = "weight") {
  return detail::mean_quadratic_form(teacher.cast<double>(), inputs, name);
}

// The four sums of one matrix or, added up, of a stage or a whole model.
struct MatrixError {
  double weight_difference = 0.0;  // ‖W − Ŵ‖²_F
  double weight_norm = 0.0;        // ‖W‖²_F of the teacher
  double output_error = 0.0;       // (1/n) Σ ‖(W − Ŵ) x‖², 0 without inputs
  double output_energy = 0.0;      // (1/n) Σ ‖W x‖², 0 without inputs

  MatrixError& operator+=(const MatrixError& other) {
    weight_difference += other.weight_difference;
    weight_norm += other.weight_norm;
    output_error += other.output_error;
    output_energy += other.output_energy;
    return *this;
  }
};

// All four sums of one matrix; the output terms stay 0 when `inputs` is null
// (a weight that multiplies no activations, such as an embedding table that is
// only indexed).
inline MatrixError measure_error(const model::Matrix& teacher, const QuantizedMatrix& student,
                                 const calibration::InputStatistics* inputs, std::string_view name = "weight") {
  detail::check_same_shape(teacher, student, name);
  const Eigen::MatrixXd w = teacher.cast<double>();
  const Eigen::MatrixXd e = w - student.dequantize().cast<double>();
  MatrixError error{e.squaredNorm(), w.squaredNorm(), 0.0, 0.0};
  if (inputs != nullptr) {
    error.output_error = detail::mean_quadratic_form(e, *inputs, name);
    error.output_energy = detail::mean_quadratic_form(w, *inputs, name);
  }
  return error;
}

}  // namespace dilemma::quant
