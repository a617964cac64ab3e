#include <charconv>

#include "commands.hpp"
#include "dilemma/error.hpp"

namespace dilemma::cli {

std::vector<TokenId> parse_id_list(const std::string& text, const std::string& option) {
  std::vector<TokenId> ids;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find(',', start), text.size());
    const std::string_view item(text.data() + start, end - start);
    TokenId id = 0;
    const auto [rest, error] = std::from_chars(item.data(), item.data() + item.size(), id);
    if (item.empty() || error != std::errc() || rest != item.data() + item.size()) {
      dilemma::detail::fail("{}: \"{}\" is not a token id (expected comma-separated integers like 2,100,7)", option,
                            item);
    }
    ids.push_back(id);
    start = end + 1;
  }
  return ids;
}

}  // namespace dilemma::cli
