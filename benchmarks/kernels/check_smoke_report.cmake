# Runs `bench_kernels --quick --kernels scalar,auto` and checks its JSON report:
# it must parse, and every product must have a positive time and fraction of
# the read bandwidth, every GEMV also a positive fraction of a plain read of
# its weight copies; rounding activations to int8 must have positive times for
# the reference and for the two kernel sets named.
# Usage: cmake -DBENCH_KERNELS=<path> -DREPORT=<json path> -P check_smoke_report.cmake
execute_process(COMMAND ${BENCH_KERNELS} --quick --kernels scalar,auto --out ${REPORT} RESULT_VARIABLE exit_code)
if(NOT exit_code EQUAL 0)
  message(FATAL_ERROR "bench_kernels --quick exited with ${exit_code}")
endif()
file(READ ${REPORT} report)
include(${CMAKE_CURRENT_LIST_DIR}/../smoke_report.cmake)

string(JSON result_count LENGTH "${report}" results)
if(result_count EQUAL 0)
  message(FATAL_ERROR "${REPORT}: no results")
endif()
math(EXPR last_result "${result_count} - 1")
set(gemv_count 0)
foreach(i RANGE ${last_result})
  require_positive(results ${i} seconds median)
  require_positive(results ${i} fraction_of_read_bandwidth median)
  string(JSON kind GET "${report}" results ${i} kind)
  if(kind STREQUAL "gemv")
    require_positive(results ${i} fraction_of_copies_read median)
    math(EXPR gemv_count "${gemv_count} + 1")
  endif()
endforeach()
if(gemv_count EQUAL 0)
  message(FATAL_ERROR "${REPORT}: no GEMV results")
endif()

string(JSON rounding_count LENGTH "${report}" int8_activation_rounding)
# Three vector lengths, each with the reference and the two kernel sets.
if(rounding_count LESS 9)
  message(FATAL_ERROR "${REPORT}: ${rounding_count} int8_activation_rounding entries, expected 9")
endif()
math(EXPR last_rounding "${rounding_count} - 1")
foreach(i RANGE ${last_rounding})
  require_positive(int8_activation_rounding ${i} nanoseconds_per_call median)
endforeach()
