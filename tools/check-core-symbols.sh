#!/bin/sh
# Fails if the core library references any symbol outside a small allowlist:
# the core must not touch sockets, clocks, files, DNS, threads, signals or the
# allocator (DESIGN.md section 1).  Sanitizer, coverage and fuzzer runtime
# symbols are allowed because instrumented builds add them.
set -eu
lib=$1
undefined=$(nm -u "$lib" 2>/dev/null | awk '{print $NF}' | sort -u)
allowed='^(memcpy|memmove|memset|memchr|memcmp|strlen|strcmp|strncmp|__stack_chk_fail|__memcpy_chk|__memset_chk|__memmove_chk|_GLOBAL_OFFSET_TABLE_|__(asan|ubsan|sanitizer|gcov|llvm|msan|tsan|afl)_.*|__sancov.*|__start___sancov.*|__stop___sancov.*|__gcov.*)$'
bad=$(printf '%s\n' "$undefined" | grep -Ev "$allowed" | grep -v '^$' || true)
if [ -n "$bad" ]; then
  echo "core library references forbidden symbols:" >&2
  printf '  %s\n' $bad >&2
  exit 1
fi
count=$(printf '%s\n' "$undefined" | grep -c . || true)
echo "core_symbols: $count undefined symbols, all allowed"
