#!/bin/sh
# Install headless Chromium and its WebDriver from Debian when running as root and
# they are missing (tests/test_ward_chat_browser.py needs them). Never fails: without
# root or network the browser test skips with a stated reason instead.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "ensure_browser_deps: chromium/chromedriver missing and not root; browser test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
    || echo "ensure_browser_deps: apt-get install chromium chromium-driver failed; browser test will skip" >&2
exit 0
