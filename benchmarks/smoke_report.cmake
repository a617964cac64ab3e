# What the benchmarks' smoke checks share: require_positive(<json path...>)
# stops with an error unless the field of the JSON document in ${report}
# (read from the file ${REPORT}) at that path is a positive number.
# string(JSON) itself stops with an error naming the path when the report does
# not parse or a field is missing.
function(require_positive)
  string(JSON value GET "${report}" ${ARGN})
  if(NOT value GREATER 0)
    string(REPLACE ";" "." path "${ARGN}")
    message(FATAL_ERROR "${REPORT}: ${path} is ${value}, expected a positive number")
  endif()
endfunction()
