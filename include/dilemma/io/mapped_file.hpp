#pragma once
// A whole file mapped read-only into memory. Checkpoints are mapped rather than
// read: opening a 700 MB model then costs only its header, and a process that
// runs a few layers pages in only those layers' weights.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include "dilemma/error.hpp"

namespace dilemma::io {

namespace detail {

inline std::string errno_message(int error) { return std::generic_category().message(error); }

// Holds the descriptor only while MappedFile::open runs: a mapping stays valid
// after its descriptor is closed.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() { ::close(fd_); }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace detail

class MappedFile {
 public:
  // Throws dilemma::Error if the file cannot be opened, is not a regular file,
  // or cannot be mapped. An empty file gives an empty span.
  static MappedFile open(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      dilemma::detail::fail("{}: cannot open: {}", path.string(), detail::errno_message(error));
    }
    const detail::FileDescriptor descriptor(fd);
    struct stat status {};
    if (::fstat(fd, &status) != 0) {
      const int error = errno;
      dilemma::detail::fail("{}: cannot stat: {}", path.string(), detail::errno_message(error));
    }
    if (!S_ISREG(status.st_mode)) dilemma::detail::fail("{}: not a regular file", path.string());
    const auto size = static_cast<std::size_t>(status.st_size);
    if (size == 0) return MappedFile(path, nullptr, 0);  // mmap rejects zero-length mappings
    void* address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, descriptor.get(), 0);
    if (address == MAP_FAILED) {
      const int error = errno;
      dilemma::detail::fail("{}: cannot memory-map {} bytes: {}", path.string(), size, detail::errno_message(error));
    }
    return MappedFile(path, static_cast<const std::byte*>(address), size);
  }

  MappedFile(MappedFile&& other) noexcept
      : path_(std::move(other.path_)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}

  MappedFile& operator=(MappedFile&& other) noexcept {
    if (this != &other) {
      unmap();
      path_ = std::move(other.path_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { unmap(); }

  // Valid until this object is destroyed; moving the object keeps it valid.
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile(std::filesystem::path path, const std::byte* data, std::size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  void unmap() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  }

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace dilemma::io
