#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright's own browser download cannot
# work offline). Install it when missing and we may.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "chromium is not installed and cannot be installed here; browser tests will be skipped (failed in CI)" >&2
fi
