#include <doctest/doctest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "dilemma/edge/cluster.hpp"
#include "test_support.hpp"

using namespace dilemma;
using nlohmann::json;

namespace {

const std::filesystem::path examples =
    std::filesystem::path(DILEMMA_ASSETS_DIR).parent_path() / "examples" / "clusters";

json small_cluster() {
  return json::parse(R"({
    "name": "two",
    "servers": [
      {"name": "a", "memory": "2 MiB", "peak_flops": "10 GFLOP/s", "memory_bandwidth": "5 GB/s"},
      {"name": "b", "memory": 1048576, "speed_factor": 0.5, "formats": ["int8", "int4"]}
    ],
    "links": [{"from": "a", "to": "b", "bandwidth": "100 Mbit/s", "latency": "2 ms"}],
    "user": "a"
  })");
}

std::string error_of(const json& cluster) {
  try {
    edge::Cluster::from_json(cluster, "c.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("a cluster loads from JSON with units, defaults and symmetric links") {
  const edge::Cluster cluster = edge::Cluster::from_json(small_cluster(), "c.json");
  REQUIRE(cluster.servers.size() == 2);
  CHECK(cluster.servers[0].memory_bytes == 2097152.0);
  CHECK(cluster.servers[0].peak_flops[static_cast<std::size_t>(quant::Format::int4)] == 10e9);
  CHECK(cluster.servers[0].memory_bandwidth == 5e9);
  CHECK(cluster.servers[0].formats.size() == 4);
  CHECK(cluster.servers[1].speed_factor == 0.5);
  CHECK_FALSE(cluster.servers[1].runs(quant::Format::f32));
  CHECK(cluster.node_count() == 2);
  CHECK(cluster.user_node() == 0);
  const auto forward = cluster.link(0, 1), backward = cluster.link(1, 0);
  REQUIRE(forward);
  REQUIRE(backward);
  CHECK(backward->bandwidth == 12.5e6);
  CHECK(forward->transfer_seconds(12.5e6) == doctest::Approx(1.002));
}

TEST_CASE("a separate user node, asymmetric links and the default link") {
  json input = small_cluster();
  input["user"] = {{"name", "phone"}};
  input["links"].push_back(
      {{"from", "phone"}, {"to", "a"}, {"bandwidth", "20 Mbit/s"}, {"latency", "5 ms"}, {"symmetric", false}});
  input["default_link"] = {{"bandwidth", "1 Mbit/s"}, {"latency", "50 ms"}};
  const edge::Cluster cluster = edge::Cluster::from_json(input, "c.json");
  CHECK(cluster.node_count() == 3);
  CHECK(cluster.user_node() == 2);
  CHECK(cluster.node_name(2) == "phone");
  CHECK(cluster.link(2, 0)->latency == doctest::Approx(0.005));
  CHECK(cluster.link(0, 2)->latency == doctest::Approx(0.05));  // the reverse falls back to the default link
  CHECK(cluster.link(2, 1)->bandwidth == 125000.0);

  const edge::Cluster again = edge::Cluster::from_json(cluster.to_json(), "round trip");
  CHECK(again.to_json() == cluster.to_json());
}

TEST_CASE("cluster validation names the file, server and field") {
  json input = small_cluster();
  input["servers"][1]["name"] = "a";
  CHECK(error_of(input) == "c.json: servers[1] (\"a\"): duplicate server name (also servers[0])");

  input = small_cluster();
  input["servers"][0]["memory"] = "0 MiB";
  CHECK(error_of(input) == "c.json: servers[0] (\"a\").memory must be positive, got 0 bytes");

  input = small_cluster();
  input["servers"][0]["memory"] = "-1 GiB";
  CHECK(error_of(input) == "c.json: servers[0] (\"a\").memory must be positive, got -1073741824 bytes");

  input = small_cluster();
  input["servers"][1].erase("memory");
  CHECK(error_of(input) == "c.json: servers[1] (\"b\"): missing field \"memory\"");

  input = small_cluster();
  input["servers"][0]["memroy"] = "1 MiB";
  CHECK(error_of(input) ==
        "c.json: servers[0] (\"a\"): unknown field \"memroy\" (expected name, description, memory, "
        "peak_flops, memory_bandwidth, speed_factor, stage_overhead, formats)");

  input = small_cluster();
  input["servers"][1]["speed_factor"] = 0;
  CHECK(error_of(input) == "c.json: servers[1] (\"b\").speed_factor must be positive, got 0");

  input = small_cluster();
  input["servers"][1]["formats"] = json::array({"int8", "int3"});
  CHECK(error_of(input) ==
        "c.json: servers[1] (\"b\").formats: unknown format \"int3\" (expected f32, f16, int8 or int4)");

  input = small_cluster();
  input["servers"][1]["formats"] = json::array();
  CHECK(error_of(input) == "c.json: servers[1] (\"b\").formats is empty: the server could run no stage");

  input = small_cluster();
  input["links"][0]["to"] = "c";
  CHECK(error_of(input) == "c.json: links[0] (a -> c): unknown node \"c\" (servers: a, b)");

  input = small_cluster();
  input["links"][0]["latency"] = "-1 ms";
  CHECK(error_of(input) == "c.json: links[0] (a -> b).latency must be >= 0, got -0.001 s");

  input = small_cluster();
  input["links"][0]["bandwidth"] = "fast";
  CHECK(error_of(input) ==
        "c.json: links[0] (a -> b).bandwidth: \"fast\" is not a bandwidth: expected a number followed "
        "by one of bit/s, kbit/s, Mbit/s, Gbit/s, Tbit/s, B/s, kB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s "
        "or GiB/s (or a JSON number in bytes/s)");

  input = small_cluster();
  input["links"].push_back({{"from", "b"}, {"to", "a"}, {"bandwidth", 1e6}, {"latency", 0}});
  CHECK(error_of(input) == "c.json: links[1] (b -> a): the pair is already linked by links[0] (a -> b, symmetric)");

  input = small_cluster();
  input["links"][0]["to"] = "a";
  CHECK(error_of(input) == "c.json: links[0] (a -> a): a link must join two different nodes");

  input = small_cluster();
  input["user"] = "z";
  CHECK(error_of(input) ==
        "c.json: user: \"z\" is not a server of the cluster (a, b); to declare a separate user node "
        "write \"user\": {\"name\": \"z\"}");

  input = small_cluster();
  input["user"] = {{"name", "phone"}};
  CHECK(error_of(input) == "c.json: the user node \"phone\" has no link to any server and there is no default_link");

  input = small_cluster();
  input.erase("user");
  CHECK(error_of(input) == "c.json: missing field \"user\"");

  input = small_cluster();
  input["servers"] = json::array();
  CHECK(error_of(input) == "c.json: the cluster has no servers");
}

TEST_CASE("loading a cluster file reports unreadable and malformed files") {
  testing::ScratchDir scratch;
  CHECK_THROWS_WITH_AS(edge::Cluster::load(scratch / "missing.json"),
                       ((scratch / "missing.json").string() + ": cannot open the cluster file").c_str(), Error);
  testing::write_file(scratch / "broken.json", "{\"servers\": [");
  try {
    edge::Cluster::load(scratch / "broken.json");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).starts_with((scratch / "broken.json").string() + ": invalid JSON: "));
  }
  json unnamed = small_cluster();
  unnamed.erase("name");
  testing::write_file(scratch / "unnamed.json", unnamed.dump());
  CHECK(edge::Cluster::load(scratch / "unnamed.json").name == "unnamed");
}

TEST_CASE("the example clusters load") {
  for (const char* name : {"smart-city", "smart-city-opt350m", "homogeneous", "too-small"}) {
    CAPTURE(name);
    const edge::Cluster cluster = edge::Cluster::load(examples / (std::string(name) + ".json"));
    CHECK(cluster.name == name);
    CHECK(cluster.servers.size() >= 3);
  }
  const edge::Cluster city = edge::Cluster::load(examples / "smart-city.json");
  CHECK(city.servers.size() == 5);
  CHECK_FALSE(city.user.at_server);
  CHECK_FALSE(city.servers[3].runs(quant::Format::f32));
  CHECK_FALSE(city.link(city.user_node(), 0).has_value());  // the phone reaches only two boxes
}
