# Installs the headers and an exported package so that
# find_package(dilemma CONFIG REQUIRED) + dilemma::dilemma works for consumers.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# A project that vendors dilemma with add_subdirectory() usually does not want
# dilemma's headers in its own install tree.
option(DILEMMA_INSTALL "Generate dilemma's install rules" ${PROJECT_IS_TOP_LEVEL})
if(NOT DILEMMA_INSTALL)
  return()
endif()

# The package has no binaries, so its CMake files go under the data directory:
# one install serves every architecture.
set(DILEMMA_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/dilemma"
    CACHE STRING "Where dilemmaConfig.cmake is installed, relative to the prefix")

# Everything a consumer of the library needs is in one component, so that the
# library can be installed (and tested as a package) without the CLI or the
# examples having been built.
set(DILEMMA_INSTALL_COMPONENT dilemma_development)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/dilemma"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        COMPONENT ${DILEMMA_INSTALL_COMPONENT}
        FILES_MATCHING PATTERN "*.hpp")

# INCLUDES DESTINATION puts the installed include directory on the exported
# target whatever CMAKE_INSTALL_INCLUDEDIR was when the target was declared.
install(TARGETS dilemma
        EXPORT dilemmaTargets
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT dilemmaTargets
        NAMESPACE dilemma::
        DESTINATION "${DILEMMA_INSTALL_CMAKEDIR}"
        COMPONENT ${DILEMMA_INSTALL_COMPONENT})

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/dilemmaConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/dilemmaConfig.cmake"
  INSTALL_DESTINATION "${DILEMMA_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/dilemmaConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)

install(FILES
          "${PROJECT_BINARY_DIR}/dilemmaConfig.cmake"
          "${PROJECT_BINARY_DIR}/dilemmaConfigVersion.cmake"
          "${CMAKE_CURRENT_LIST_DIR}/dilemmaDependencies.cmake"
        DESTINATION "${DILEMMA_INSTALL_CMAKEDIR}"
        COMPONENT ${DILEMMA_INSTALL_COMPONENT})
