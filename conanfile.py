import os

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, rmdir
from conan.tools.gnu import PkgConfigDeps

required_conan_version = ">=2.0"


class DilemmaConan(ConanFile):
    name = "dilemma"
    version = "0.1.0"
    description = ("Header-only C++20 library: OPT transformer inference split into stages, "
                   "with layer placement and quantization planned across edge servers by an ILP")
    license = "MIT"
    topics = ("llm", "inference", "quantization", "edge-computing", "header-only")
    package_type = "header-library"
    # Needed to run the project's CMake install in package(); the package ID
    # ignores them (see package_id()).
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "cmake/*", "CMakeLists.txt", "LICENSE"
    no_copy_source = True

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        self.requires("eigen/3.4.0")
        self.requires("coin-cbc/[~2.10]")
        self.requires("fmt/[>=9 <12]")
        self.requires("nlohmann_json/[>=3.10 <4]")
        self.requires("utf8proc/[>=2.6 <3]")

    def build_requirements(self):
        # The project's CMake finds utf8proc and CBC with pkg-config.
        self.tool_requires("pkgconf/[>=2 <3]")

    def validate(self):
        if self.settings.compiler.get_safe("cppstd"):
            check_min_cppstd(self, 20)

    def generate(self):
        CMakeDeps(self).generate()
        # CMakeToolchain puts the generators folder, where these .pc files go,
        # on PKG_CONFIG_PATH.
        PkgConfigDeps(self).generate()
        toolchain = CMakeToolchain(self)
        toolchain.cache_variables["DILEMMA_BUILD_TESTS"] = False
        toolchain.cache_variables["DILEMMA_BUILD_EXAMPLES"] = False
        toolchain.cache_variables["DILEMMA_BUILD_BENCHMARKS"] = False
        toolchain.cache_variables["DILEMMA_INSTALL"] = True
        toolchain.generate()

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.configure()
        cmake.install()
        # Conan consumers get their config files from CMakeDeps, generated from
        # package_info(); the project's own would find the dependencies outside
        # Conan.
        rmdir(self, os.path.join(self.package_folder, "share"))

    def package_id(self):
        self.info.clear()

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "dilemma")
        self.cpp_info.set_property("cmake_target_name", "dilemma::dilemma")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
