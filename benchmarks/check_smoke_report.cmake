# Runs `bench_model --quick --formats f32,int4` and checks its JSON report: it must parse, and
# every measured rate and byte count must be a positive number.
# Usage: cmake -DBENCH_MODEL=<path> -DREPORT=<json path> -P check_smoke_report.cmake
execute_process(COMMAND ${BENCH_MODEL} --quick --formats f32,int4 --out ${REPORT} RESULT_VARIABLE exit_code)
if(NOT exit_code EQUAL 0)
  message(FATAL_ERROR "bench_model --quick exited with ${exit_code}")
endif()
file(READ ${REPORT} report)

# string(JSON) stops with an error naming the path when the report does not
# parse or a field is missing.
function(require_positive)
  string(JSON value GET "${report}" ${ARGN})
  if(NOT value GREATER 0)
    string(REPLACE ";" "." path "${ARGN}")
    message(FATAL_ERROR "${REPORT}: ${path} is ${value}, expected a positive number")
  endif()
endfunction()

foreach(threads single_thread all_threads)
  require_positive(memory_read_bandwidth ${threads} gigabytes_per_second median)
endforeach()
string(JSON model_count LENGTH "${report}" models)
if(NOT model_count EQUAL 4)
  message(FATAL_ERROR "${REPORT}: expected results for 2 models x 2 formats, got ${model_count}")
endif()
math(EXPR last_model "${model_count} - 1")
foreach(i RANGE ${last_model})
  require_positive(models ${i} prefill tokens_per_second median)
  require_positive(models ${i} prefill gigaflops_per_second_at_median)
  require_positive(models ${i} decode tokens_per_second median)
  require_positive(models ${i} decode bytes_per_token weights total)
  require_positive(models ${i} decode bytes_per_token kv_cache_mean)
  require_positive(models ${i} decode fraction_of_bandwidth single_thread)
  require_positive(models ${i} decode fraction_of_bandwidth all_threads)
endforeach()
