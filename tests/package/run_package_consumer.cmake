# cmake -P script behind the package_consumer test (see CMakeLists.txt for the
# variables it is given): install the build tree into WORK_DIR/prefix, build
# the consumer project against that prefix only, run it and check its output.
cmake_minimum_required(VERSION 3.20)

foreach(required IN ITEMS BUILD_DIR SOURCE_DIR INSTALL_COMPONENT CONSUMER_SOURCE_DIR WORK_DIR
                          GENERATOR EXPECTED_VERSION)
  if(NOT DEFINED ${required} OR "${${required}}" STREQUAL "")
    message(FATAL_ERROR "run_package_consumer.cmake: -D ${required}=... is required")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/build")
# A previous run's prefix could hide a file that this build no longer installs.
file(REMOVE_RECURSE "${WORK_DIR}")

# run_step(<what> <command>...): runs the command, fails the test if it fails.
function(run_step what)
  message(STATUS "package_consumer: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "package_consumer: ${what} failed (${result}): ${ARGN}")
  endif()
endfunction()

run_step("install ${BUILD_DIR} into ${prefix}"
  "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}" --component "${INSTALL_COMPONENT}")

file(GLOB_RECURSE installed_targets_files "${prefix}/*/dilemmaTargets.cmake")
if(NOT installed_targets_files)
  message(FATAL_ERROR "package_consumer: the install put no dilemmaTargets.cmake under ${prefix}")
endif()
foreach(targets_file IN LISTS installed_targets_files)
  file(READ "${targets_file}" targets)
  string(FIND "${targets}" "${SOURCE_DIR}" source_dir_at)
  if(NOT source_dir_at EQUAL -1)
    message(FATAL_ERROR "package_consumer: ${targets_file} refers to the source tree ${SOURCE_DIR}; "
                        "an installed package must only refer to its own prefix")
  endif()
endforeach()

set(configure_args
  -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}" -G "${GENERATOR}"
  "-DCMAKE_PREFIX_PATH=${prefix}"
  # The package registry could point at some other build of dilemma.
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(GENERATOR_IS_MULTI_CONFIG)
  list(APPEND configure_args -DCMAKE_CONFIGURATION_TYPES=Release)
else()
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=Release)
endif()
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX_COMPILER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
run_step("configure the consumer" "${CMAKE_COMMAND}" ${configure_args})

# find_package() could still have found another installation (say, in
# /usr/local): the test is only meaningful if it used the one just made.
file(STRINGS "${consumer_build}/CMakeCache.txt" dilemma_dir_entry REGEX "^dilemma_DIR:")
string(REGEX REPLACE "^dilemma_DIR:[A-Z]+=" "" dilemma_dir "${dilemma_dir_entry}")
file(REAL_PATH "${prefix}" real_prefix)
file(REAL_PATH "${dilemma_dir}" real_dilemma_dir)
string(FIND "${real_dilemma_dir}/" "${real_prefix}/" prefix_at)
if(NOT prefix_at EQUAL 0)
  message(FATAL_ERROR "package_consumer: the consumer found dilemma in '${dilemma_dir}', "
                      "not in the prefix just installed (${prefix})")
endif()

run_step("build the consumer" "${CMAKE_COMMAND}" --build "${consumer_build}" --config Release)

if(GENERATOR_IS_MULTI_CONFIG)
  set(consumer "${consumer_build}/Release/consumer${EXECUTABLE_SUFFIX}")
else()
  set(consumer "${consumer_build}/consumer${EXECUTABLE_SUFFIX}")
endif()
execute_process(COMMAND "${consumer}"
                RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
message(STATUS "package_consumer: the consumer printed:\n${output}${errors}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "package_consumer: ${consumer} exited with ${result}")
endif()

string(REPLACE "." "\\." version_pattern "${EXPECTED_VERSION}")
foreach(expected_line IN ITEMS
    "^dilemma ${version_pattern}\n"
    "\ndependencies: Eigen [0-9.]+, fmt [0-9]+, nlohmann_json [0-9.]+, utf8proc [0-9.]+, CBC [0-9.]+\n"
    "\ncaught dilemma::Error: consumer check 42\n$")
  if(NOT output MATCHES "${expected_line}")
    message(FATAL_ERROR "package_consumer: the consumer's output does not match '${expected_line}'")
  endif()
endforeach()
message(STATUS "package_consumer: passed")
