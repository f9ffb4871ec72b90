# Writes OUT from IN with SOWER_REVISION set to `git describe --always --dirty` of SOURCE_DIR
# (or "unknown" outside a git checkout). Runs at every build; rewrites OUT only when it changes,
# so an unchanged revision does not relink.
execute_process(COMMAND git -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE SOWER_REVISION OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE git_result ERROR_QUIET)
if(NOT git_result EQUAL 0 OR SOWER_REVISION STREQUAL "")
  set(SOWER_REVISION "unknown")
endif()
configure_file("${IN}" "${OUT}.new" @ONLY)
file(COPY_FILE "${OUT}.new" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.new")
