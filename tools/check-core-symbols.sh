#!/bin/sh
# Fails if the core library references any symbol outside a small allowlist:
# the core must not touch sockets, clocks, files, DNS, threads, signals or the
# allocator (DESIGN.md section 1).  Sanitizer, coverage and fuzzer runtime
# symbols are allowed because instrumented builds add them.
set -eu
lib=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm --defined-only "$lib" | awk 'NF == 3 {print $3}' | sort -u >"$tmp/defined"
nm -u "$lib" | awk '$1 == "U" {print $2}' | sort -u >"$tmp/undefined"
comm -23 "$tmp/undefined" "$tmp/defined" >"$tmp/external"
allowed='^(memcpy|memmove|memset|memchr|memcmp|strlen|strcmp|strncmp|bcmp|__stack_chk_fail|__(memcpy|memset|memmove)_chk|_GLOBAL_OFFSET_TABLE_|__(asan|ubsan|sanitizer|gcov|llvm|msan|tsan|afl)_.*|__sancov.*|__(start|stop)___sancov.*|__gcov.*|__llvm.*)$'
if grep -Ev "$allowed" "$tmp/external" >"$tmp/bad"; then
  echo "core library references forbidden symbols:" >&2
  sed 's/^/  /' "$tmp/bad" >&2
  exit 1
fi
echo "core_symbols: $(wc -l <"$tmp/external") external symbols, all allowed: $(tr '\n' ' ' <"$tmp/external")"
