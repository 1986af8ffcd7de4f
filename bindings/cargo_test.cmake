# Runs the Rust crate's tests and example against a build tree's libexmem.so.
#   cmake -DCARGO=... -DRUSTC=... -DLIB_DIR=<folder of libexmem.so> -DCRATE=<crate>
#         -DTARGET_DIR=<cargo target folder> -P cargo_test.cmake
# A missing toolchain fails the test: it is not skipped.
foreach(tool CARGO RUSTC)
  if(NOT EXISTS "${${tool}}")
    message(FATAL_ERROR "${${tool}} is missing: install Debian's cargo and rustc (scripts/deps test)")
  endif()
endforeach()
get_filename_component(bin_dir "${RUSTC}" DIRECTORY)
set(ENV{RUSTC} "${RUSTC}")
if(EXISTS "${bin_dir}/rustdoc")
  set(ENV{RUSTDOC} "${bin_dir}/rustdoc")
endif()
set(ENV{EXMEM_LIB_DIR} "${LIB_DIR}")
set(ENV{CARGO_TARGET_DIR} "${TARGET_DIR}")
# The crate's own rpath finds the library; nothing else may.
unset(ENV{LD_LIBRARY_PATH})

function(run)
  message(STATUS "running: ${ARGN}")
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY "${CRATE}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ARGN}: exit status ${rc}")
  endif()
endfunction()

run("${CARGO}" test --offline --quiet)
run("${CARGO}" run --offline --quiet --example vault_demo)
