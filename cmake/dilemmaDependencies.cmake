# Finds the library's dependencies and lists the targets dilemma::dilemma links.
# Shared by the build tree (CMakeLists.txt) and the installed package
# (dilemmaConfig.cmake), so that both resolve dependencies the same way.
include(CMakeFindDependencyMacro)

# Inside the package config file a missing dependency must make
# find_package(dilemma) report "not found" with the reason, so that an optional
# find_package(dilemma) can fall back; in the build tree it is an error.
if(DILEMMA_IN_PACKAGE_CONFIG)
  set(_dilemma_report_missing_dependency TRUE)
else()
  set(_dilemma_report_missing_dependency FALSE)
endif()

macro(dilemma_find_dependency)
  if(_dilemma_report_missing_dependency)
    find_dependency(${ARGN})
  else()
    find_package(${ARGN} REQUIRED)
  endif()
endmacro()

# pkg_check_modules' REQUIRED is a fatal error, so in the package config the
# module is looked up quietly and a miss is reported like find_dependency does.
macro(dilemma_pkg_check_module prefix module)
  if(_dilemma_report_missing_dependency)
    pkg_check_modules(${prefix} QUIET IMPORTED_TARGET ${module})
    if(NOT ${prefix}_FOUND)
      set(dilemma_NOT_FOUND_MESSAGE "dilemma could not be found because pkg-config module \"${module}\" could not be found (is it installed, and is its directory in PKG_CONFIG_PATH or CMAKE_PREFIX_PATH?)")
      set(dilemma_FOUND FALSE)
      return()
    endif()
  else()
    pkg_check_modules(${prefix} REQUIRED IMPORTED_TARGET ${module})
  endif()
endmacro()

dilemma_find_dependency(Eigen3 3.4 NO_MODULE)
dilemma_find_dependency(fmt)
dilemma_find_dependency(nlohmann_json 3.10)
dilemma_find_dependency(PkgConfig)
# utf8proc and CBC are found through pkg-config, which Debian, vcpkg and Conan
# all provide for them.
dilemma_pkg_check_module(DILEMMA_UTF8PROC libutf8proc)
dilemma_pkg_check_module(DILEMMA_CBC cbc)

set(DILEMMA_DEPENDENCY_TARGETS
  Eigen3::Eigen fmt::fmt nlohmann_json::nlohmann_json
  PkgConfig::DILEMMA_UTF8PROC PkgConfig::DILEMMA_CBC)
