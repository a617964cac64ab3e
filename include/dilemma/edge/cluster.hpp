#pragma once
// An edge cluster: the servers a model can be split across, the links between
// them, and where the user's requests enter. Built in code or loaded from JSON
// (examples/clusters/, format in docs/model.md), and validated so that a typo
// or an impossible number fails here with the file, server and field named.
//
// Messages travel only over declared links (or the default link): dilemma
// never routes through a third server, so two consecutive stages may run on
// two servers only if a link joins them.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/edge/units.hpp"
#include "dilemma/error.hpp"
#include "dilemma/io/json_file.hpp"
#include "dilemma/quant/format.hpp"

namespace dilemma::edge {

struct Server {
  std::string name;
  // Bytes available to the planner: weights and KV caches of the stages placed here.
  double memory_bytes = 0.0;
  // FLOP/s per format, indexed by quant::Format; needed by the analytic cost
  // model only. Integer formats may differ from f32 (dequantization costs work).
  std::array<std::optional<double>, quant::all_formats.size()> peak_flops{};
  std::optional<double> memory_bandwidth;  // bytes/s, analytic cost model only
  // Speed relative to the machine a measured profile comes from: 2 runs every
  // stage in half the profiled time, 0.5 in twice the time.
  double speed_factor = 1.0;
  // Fixed cost of running one stage once (dispatch, synchronisation), added by
  // the analytic cost model to every stage call on this server.
  double stage_overhead_seconds = 0.0;
  std::vector<quant::Format> formats{quant::all_formats.begin(), quant::all_formats.end()};

  bool runs(quant::Format format) const { return std::find(formats.begin(), formats.end(), format) != formats.end(); }
  void set_peak_flops(double flops) { peak_flops.fill(flops); }
};

struct Link {
  double bandwidth = 0.0;  // bytes/s
  double latency = 0.0;    // seconds
  double transfer_seconds(double bytes) const { return latency + bytes / bandwidth; }
};

struct LinkSpec {
  std::string from;
  std::string to;
  Link link;
  bool symmetric = true;  // also carries traffic from `to` to `from`
};

// Where prompts arrive and generated tokens go: a server of the cluster (the
// access point), or a node of its own whose links are declared like a server's.
struct User {
  std::string name;
  bool at_server = true;
};

struct Cluster {
  std::string name;
  std::string description;
  std::vector<Server> servers;
  std::vector<LinkSpec> links;
  std::optional<Link> default_link;  // for pairs no LinkSpec names; nullopt: such pairs cannot talk
  User user;

  // Nodes are the servers (0 .. servers.size()-1) and, if the user is not at
  // a server, the user node (servers.size()).
  std::size_t node_count() const { return servers.size() + (user.at_server ? 0 : 1); }
  std::size_t user_node() const { return user.at_server ? server_index(user.name, "user") : servers.size(); }
  const std::string& node_name(std::size_t node) const {
    return node < servers.size() ? servers[node].name : user.name;
  }
  // How messages name where the user is: `the user node "phone"` or `the
  // user's access point "gateway"`.
  std::string user_label() const {
    return fmt::format("the {} \"{}\"", user.at_server ? "user's access point" : "user node", user.name);
  }
  std::optional<std::size_t> find_server(std::string_view server_name) const {
    for (std::size_t i = 0; i < servers.size(); ++i) {
      if (servers[i].name == server_name) return i;
    }
    return std::nullopt;
  }
  // `what` names the reference in the error, e.g. "pinned stage layer.3".
  std::size_t server_index(std::string_view server_name, std::string_view what) const {
    if (auto index = find_server(server_name)) return *index;
    dilemma::detail::fail("{}: unknown server \"{}\" (cluster \"{}\" has {})", what, server_name, name, server_names());
  }
  std::string server_names() const {
    std::string list;
    for (const Server& server : servers) list += (list.empty() ? "" : ", ") + server.name;
    return list;
  }
  // The link carrying messages from node `from` to node `to` (from != to).
  std::optional<Link> link(std::size_t from, std::size_t to) const {
    const std::string& a = node_name(from);
    const std::string& b = node_name(to);
    for (const LinkSpec& spec : links) {
      if ((spec.from == a && spec.to == b) || (spec.symmetric && spec.from == b && spec.to == a)) return spec.link;
    }
    return default_link;
  }

  // Throws dilemma::Error naming `source` and the offending field.
  void validate(const std::string& source = "cluster") const;
  static Cluster from_json(const nlohmann::json& json, const std::string& source = "cluster.json");
  static Cluster load(const std::filesystem::path& path);
  // Quantities in base units (bytes, bytes/s, seconds, FLOP/s), so that a
  // round trip is exact.
  nlohmann::json to_json() const;
};

namespace detail {

inline void check_keys(const nlohmann::json& object, std::initializer_list<std::string_view> allowed,
                       const std::string& what) {
  for (const auto& item : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) != allowed.end()) continue;
    std::string expected;
    for (std::string_view key : allowed) expected += (expected.empty() ? "" : ", ") + std::string(key);
    dilemma::detail::fail("{}: unknown field \"{}\" (expected {})", what, item.key(), expected);
  }
}

inline const nlohmann::json& require(const nlohmann::json& object, const char* key, const std::string& what) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) dilemma::detail::fail("{}: missing field \"{}\"", what, key);
  return *it;
}

inline std::string require_string(const nlohmann::json& object, const char* key, const std::string& what) {
  const auto& value = require(object, key, what);
  if (!value.is_string()) dilemma::detail::fail("{}.{}: expected a string, got {}", what, key, value.dump());
  return value.get<std::string>();
}

inline double require_number(const nlohmann::json& value, const std::string& what) {
  if (!value.is_number()) dilemma::detail::fail("{}: expected a number, got {}", what, value.dump());
  return value.get<double>();
}

inline std::string server_label(const std::string& source, std::size_t index, const std::string& name) {
  return name.empty() ? fmt::format("{}: servers[{}]", source, index)
                      : fmt::format("{}: servers[{}] (\"{}\")", source, index, name);
}

inline Link parse_link(const nlohmann::json& json, const std::string& what) {
  if (!json.is_object())
    dilemma::detail::fail("{}: expected an object with bandwidth and latency, got {}", what, json.dump());
  Link link;
  link.bandwidth = parse_quantity(require(json, "bandwidth", what), Quantity::bandwidth, what + ".bandwidth");
  link.latency = parse_quantity(require(json, "latency", what), Quantity::duration, what + ".latency");
  return link;
}

inline Server parse_server(const nlohmann::json& json, const std::string& source, std::size_t index) {
  std::string what = server_label(source, index, "");
  if (!json.is_object()) dilemma::detail::fail("{}: expected an object, got {}", what, json.dump());
  Server server;
  server.name = require_string(json, "name", what);
  what = server_label(source, index, server.name);
  check_keys(
      json,
      {"name", "description", "memory", "peak_flops", "memory_bandwidth", "speed_factor", "stage_overhead", "formats"},
      what);
  server.memory_bytes = parse_quantity(require(json, "memory", what), Quantity::bytes, what + ".memory");
  if (auto it = json.find("peak_flops"); it != json.end() && !it->is_null()) {
    if (it->is_object()) {
      for (const auto& item : it->items()) {
        const auto format = quant::parse_format(item.key(), what + ".peak_flops");
        server.peak_flops[static_cast<std::size_t>(format)] =
            parse_quantity(item.value(), Quantity::flop_rate, what + ".peak_flops." + item.key());
      }
    } else {
      server.set_peak_flops(parse_quantity(*it, Quantity::flop_rate, what + ".peak_flops"));
    }
  }
  if (auto it = json.find("memory_bandwidth"); it != json.end() && !it->is_null()) {
    server.memory_bandwidth = parse_quantity(*it, Quantity::bandwidth, what + ".memory_bandwidth");
  }
  if (auto it = json.find("speed_factor"); it != json.end() && !it->is_null()) {
    server.speed_factor = require_number(*it, what + ".speed_factor");
  }
  if (auto it = json.find("stage_overhead"); it != json.end() && !it->is_null()) {
    server.stage_overhead_seconds = parse_quantity(*it, Quantity::duration, what + ".stage_overhead");
  }
  if (auto it = json.find("formats"); it != json.end() && !it->is_null()) {
    if (!it->is_array())
      dilemma::detail::fail("{}.formats: expected an array of format names, got {}", what, it->dump());
    server.formats.clear();
    for (const auto& format : *it) {
      if (!format.is_string()) dilemma::detail::fail("{}.formats: expected format names, got {}", what, format.dump());
      server.formats.push_back(quant::parse_format(format.get<std::string>(), what + ".formats"));
    }
  }
  return server;
}

}  // namespace detail

inline void Cluster::validate(const std::string& source) const {
  using dilemma::detail::fail;
  if (servers.empty()) fail("{}: the cluster has no servers", source);
  for (std::size_t i = 0; i < servers.size(); ++i) {
    const Server& server = servers[i];
    const std::string what = detail::server_label(source, i, server.name);
    if (server.name.empty()) fail("{}: the server name is empty", what);
    for (std::size_t j = 0; j < i; ++j) {
      if (servers[j].name == server.name) fail("{}: duplicate server name (also servers[{}])", what, j);
    }
    if (!(server.memory_bytes > 0.0) || !std::isfinite(server.memory_bytes)) {
      fail("{}.memory must be positive, got {} bytes", what, server.memory_bytes);
    }
    for (quant::Format format : quant::all_formats) {
      const auto& flops = server.peak_flops[static_cast<std::size_t>(format)];
      if (flops && (!(*flops > 0.0) || !std::isfinite(*flops))) {
        fail("{}.peak_flops for {} must be positive, got {} FLOP/s", what, quant::format_name(format), *flops);
      }
    }
    if (server.memory_bandwidth && (!(*server.memory_bandwidth > 0.0) || !std::isfinite(*server.memory_bandwidth))) {
      fail("{}.memory_bandwidth must be positive, got {} bytes/s", what, *server.memory_bandwidth);
    }
    if (!(server.speed_factor > 0.0) || !std::isfinite(server.speed_factor)) {
      fail("{}.speed_factor must be positive, got {}", what, server.speed_factor);
    }
    if (!(server.stage_overhead_seconds >= 0.0) || !std::isfinite(server.stage_overhead_seconds)) {
      fail("{}.stage_overhead must be >= 0, got {} s", what, server.stage_overhead_seconds);
    }
    if (server.formats.empty()) fail("{}.formats is empty: the server could run no stage", what);
    for (std::size_t a = 0; a < server.formats.size(); ++a) {
      for (std::size_t b = 0; b < a; ++b) {
        if (server.formats[a] == server.formats[b]) {
          fail("{}.formats lists {} twice", what, quant::format_name(server.formats[a]));
        }
      }
    }
  }

  if (user.name.empty()) fail("{}: user: the user's node name is empty", source);
  if (user.at_server) {
    if (!find_server(user.name)) {
      fail(
          "{}: user: \"{}\" is not a server of the cluster ({}); to declare a separate user node write "
          "\"user\": {{\"name\": \"{}\"}}",
          source, user.name, server_names(), user.name);
    }
  } else if (find_server(user.name)) {
    fail(
        "{}: user: the user node \"{}\" has the name of a server; write \"user\": \"{}\" to make that server the "
        "access point",
        source, user.name, user.name);
  }

  auto check_link = [&](const Link& link, const std::string& what) {
    if (!(link.bandwidth > 0.0) || !std::isfinite(link.bandwidth)) {
      fail("{}.bandwidth must be positive, got {} bytes/s", what, link.bandwidth);
    }
    if (!(link.latency >= 0.0) || !std::isfinite(link.latency)) {
      fail("{}.latency must be >= 0, got {} s", what, link.latency);
    }
  };
  auto is_node = [&](const std::string& node) { return find_server(node) || (!user.at_server && node == user.name); };
  for (std::size_t i = 0; i < links.size(); ++i) {
    const LinkSpec& spec = links[i];
    const std::string what = fmt::format("{}: links[{}] ({} -> {})", source, i, spec.from, spec.to);
    for (const std::string* end : {&spec.from, &spec.to}) {
      if (!is_node(*end)) {
        fail("{}: unknown node \"{}\" (servers: {}{})", what, *end, server_names(),
             user.at_server ? std::string() : ", user node: " + user.name);
      }
    }
    if (spec.from == spec.to) fail("{}: a link must join two different nodes", what);
    check_link(spec.link, what);
    for (std::size_t j = 0; j < i; ++j) {
      const LinkSpec& other = links[j];
      const bool same = other.from == spec.from && other.to == spec.to;
      const bool reverse_overlap =
          (other.symmetric || spec.symmetric) && other.from == spec.to && other.to == spec.from;
      if (same || reverse_overlap) {
        fail("{}: the pair is already linked by links[{}] ({} -> {}{})", what, j, other.from, other.to,
             other.symmetric ? ", symmetric" : "");
      }
    }
  }
  if (default_link) check_link(*default_link, source + ": default_link");

  if (!user.at_server) {
    bool linked = false;
    for (std::size_t server = 0; server < servers.size() && !linked; ++server) {
      linked = link(user_node(), server).has_value() || link(server, user_node()).has_value();
    }
    if (!linked) {
      fail("{}: the user node \"{}\" has no link to any server and there is no default_link", source, user.name);
    }
  }
}

inline Cluster Cluster::from_json(const nlohmann::json& json, const std::string& source) {
  using dilemma::detail::fail;
  if (!json.is_object()) fail("{}: expected a JSON object, got {}", source, json.type_name());
  detail::check_keys(json, {"name", "description", "servers", "links", "default_link", "user"}, source);
  Cluster cluster;
  if (auto it = json.find("name"); it != json.end()) {
    if (!it->is_string()) fail("{}: name: expected a string, got {}", source, it->dump());
    cluster.name = it->get<std::string>();
  }
  if (auto it = json.find("description"); it != json.end()) {
    if (!it->is_string()) fail("{}: description: expected a string, got {}", source, it->dump());
    cluster.description = it->get<std::string>();
  }
  const auto& servers = detail::require(json, "servers", source);
  if (!servers.is_array()) fail("{}: servers: expected an array, got {}", source, servers.dump());
  for (std::size_t i = 0; i < servers.size(); ++i)
    cluster.servers.push_back(detail::parse_server(servers[i], source, i));

  if (auto it = json.find("links"); it != json.end() && !it->is_null()) {
    if (!it->is_array()) fail("{}: links: expected an array, got {}", source, it->dump());
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& entry = (*it)[i];
      std::string what = fmt::format("{}: links[{}]", source, i);
      if (!entry.is_object()) fail("{}: expected an object, got {}", what, entry.dump());
      detail::check_keys(entry, {"from", "to", "bandwidth", "latency", "symmetric", "description"}, what);
      LinkSpec spec;
      spec.from = detail::require_string(entry, "from", what);
      spec.to = detail::require_string(entry, "to", what);
      what = fmt::format("{}: links[{}] ({} -> {})", source, i, spec.from, spec.to);
      spec.link = detail::parse_link(entry, what);
      if (auto symmetric = entry.find("symmetric"); symmetric != entry.end()) {
        if (!symmetric->is_boolean()) fail("{}.symmetric: expected true or false, got {}", what, symmetric->dump());
        spec.symmetric = symmetric->get<bool>();
      }
      cluster.links.push_back(std::move(spec));
    }
  }
  if (auto it = json.find("default_link"); it != json.end() && !it->is_null()) {
    if (it->is_string() && *it == "none") {
      cluster.default_link.reset();
    } else {
      const std::string what = source + ": default_link";
      detail::check_keys(*it, {"bandwidth", "latency", "description"}, what);
      cluster.default_link = detail::parse_link(*it, what);
    }
  }

  const auto& user = detail::require(json, "user", source);
  if (user.is_string()) {
    cluster.user = {user.get<std::string>(), true};
  } else if (user.is_object()) {
    detail::check_keys(user, {"name", "description"}, source + ": user");
    cluster.user = {detail::require_string(user, "name", source + ": user"), false};
  } else {
    fail("{}: user: expected a server name or {{\"name\": ...}} for a separate user node, got {}", source, user.dump());
  }
  cluster.validate(source);
  return cluster;
}

inline Cluster Cluster::load(const std::filesystem::path& path) {
  const nlohmann::json json = io::read_json_file(path, "the cluster file");
  Cluster cluster = from_json(json, path.string());
  if (cluster.name.empty()) cluster.name = path.stem().string();
  return cluster;
}

inline nlohmann::json Cluster::to_json() const {
  auto link_json = [](const Link& link) {
    return nlohmann::json{{"bandwidth", link.bandwidth}, {"latency", link.latency}};
  };
  nlohmann::json json;
  json["name"] = name;
  if (!description.empty()) json["description"] = description;
  json["servers"] = nlohmann::json::array();
  for (const Server& server : servers) {
    nlohmann::json entry{{"name", server.name}, {"memory", server.memory_bytes}};
    nlohmann::json flops = nlohmann::json::object();
    for (quant::Format format : quant::all_formats) {
      if (const auto& rate = server.peak_flops[static_cast<std::size_t>(format)]) {
        flops[std::string(quant::format_name(format))] = *rate;
      }
    }
    if (!flops.empty()) entry["peak_flops"] = flops;
    if (server.memory_bandwidth) entry["memory_bandwidth"] = *server.memory_bandwidth;
    entry["speed_factor"] = server.speed_factor;
    entry["stage_overhead"] = server.stage_overhead_seconds;
    entry["formats"] = nlohmann::json::array();
    for (quant::Format format : server.formats) entry["formats"].push_back(quant::format_name(format));
    json["servers"].push_back(std::move(entry));
  }
  json["links"] = nlohmann::json::array();
  for (const LinkSpec& spec : links) {
    nlohmann::json entry = link_json(spec.link);
    entry["from"] = spec.from;
    entry["to"] = spec.to;
    entry["symmetric"] = spec.symmetric;
    json["links"].push_back(std::move(entry));
  }
  json["default_link"] = default_link ? link_json(*default_link) : nlohmann::json(nullptr);
  json["user"] = user.at_server ? nlohmann::json(user.name) : nlohmann::json{{"name", user.name}};
  return json;
}

}  // namespace dilemma::edge
