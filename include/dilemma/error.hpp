#pragma once
// The one exception type the library throws for bad input and impossible
// requests. Messages name the file, tensor or field and what is wrong with it,
// so that a user can fix the input without reading the library's source.

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace dilemma {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {

// Throws dilemma::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace detail
}  // namespace dilemma
