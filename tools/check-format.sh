#!/usr/bin/env bash
# Fails when a tracked C source or header differs from what clang-format
# (the project's .clang-format) makes of it, naming each such file.
# Fix with: git ls-files '*.c' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r f; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "check-format: $f is not clang-formatted" >&2
    bad=1
  fi
done < <(git ls-files '*.c' '*.h')
[ "$bad" -eq 0 ] && echo "check-format: every C file is clang-formatted ($(clang-format --version | sed 's/.*version //'))"
exit "$bad"
