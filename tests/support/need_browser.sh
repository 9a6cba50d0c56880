#!/usr/bin/env bash
# `make test`: the browser tests need Debian's chromium and chromium-driver. Installed when
# missing (as root, with apt-get); if that is impossible, CI=true fails here and elsewhere the
# browser tests report themselves skipped.
set -euo pipefail
have() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }
have && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's chromium and chromium-driver (for the browser tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } || true
fi
have && exit 0
if [ "${CI:-}" = true ]; then
    echo "test: chromium and chromium-driver are missing and could not be installed" >&2
    exit 1
fi
echo "test: the browser tests will be SKIPPED: install Debian's chromium and chromium-driver"
