#include <cstring>
#include <string>
#include <utility>

#include <doctest/doctest.h>

#include "dilemma/io/mapped_file.hpp"
#include "test_support.hpp"

using dilemma::io::MappedFile;
using dilemma::testing::ScratchDir;

TEST_CASE("MappedFile maps a file's bytes and stays valid when moved") {
  const ScratchDir scratch;
  const std::string content("checkpoint bytes\0\x01\xff", 19);
  dilemma::testing::write_file(scratch / "data.bin", content);

  MappedFile mapped = MappedFile::open(scratch / "data.bin");
  CHECK(mapped.path() == scratch / "data.bin");
  REQUIRE(mapped.bytes().size() == content.size());
  CHECK(std::memcmp(mapped.bytes().data(), content.data(), content.size()) == 0);

  const std::byte* address = mapped.bytes().data();
  MappedFile moved = std::move(mapped);
  CHECK(moved.bytes().data() == address);
  CHECK(moved.bytes().size() == content.size());
  CHECK(mapped.bytes().empty());  // NOLINT(bugprone-use-after-move): moved-from objects own nothing

  MappedFile other = MappedFile::open(scratch / "data.bin");
  other = std::move(moved);
  CHECK(other.bytes().data() == address);
}

TEST_CASE("MappedFile gives an empty span for an empty file") {
  const ScratchDir scratch;
  dilemma::testing::write_file(scratch / "empty.bin", "");
  const MappedFile mapped = MappedFile::open(scratch / "empty.bin");
  CHECK(mapped.bytes().empty());
}

TEST_CASE("MappedFile reports files it cannot map") {
  const ScratchDir scratch;
  const auto missing = scratch / "missing.bin";
  CHECK_THROWS_WITH_AS(MappedFile::open(missing),
                       (missing.string() + ": cannot open: No such file or directory").c_str(), dilemma::Error);
  CHECK_THROWS_WITH_AS(MappedFile::open(scratch.path()), (scratch.path().string() + ": not a regular file").c_str(),
                       dilemma::Error);
}
