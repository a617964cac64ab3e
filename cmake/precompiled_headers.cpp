// The one source of the dilemma_precompiled target (CMakeLists.txt), which
// builds the precompiled <dilemma/dilemma.hpp> that tests, examples and
// benchmarks reuse. CMake needs a translation unit to build it from; this one
// adds nothing of its own.
