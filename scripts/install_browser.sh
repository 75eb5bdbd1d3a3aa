#!/usr/bin/env bash
# Install what the editor's browser test needs: Debian's chromium + chromedriver (apt, never a downloaded browser).
# viser and selenium come with the project's own install (pyproject: dependencies and the dev extra).
# Usage: scripts/install_browser.sh. Needs root (or sudo) for apt-get; `make test` calls it when chromium is missing.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "install_browser.sh: need root or sudo to apt-get install chromium chromium-driver" >&2; exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
fi
echo "chromium: $(command -v chromium) ($(chromium --version 2>/dev/null || echo '?'))"
echo "chromedriver: $(command -v chromedriver)"
