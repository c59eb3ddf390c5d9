#!/usr/bin/env bash
# Make sure the multi-host tests (tests/netns/, docs/testing-netns.md) can run:
# they need iproute2 (`ip`, `tc`). Installs it with apt-get when we are root and it
# is missing; otherwise only reports. Never fails the build: without root or
# iproute2 the netns tests skip themselves with the reason.
set -u
if command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_netns_deps: iproute2 missing and not root: netns tests will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_netns_deps: iproute2 missing and no apt-get: install it by hand" >&2
    exit 0
fi
echo "ensure_netns_deps: installing iproute2" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2; }; then
    echo "ensure_netns_deps: apt-get failed: netns tests will be skipped" >&2
fi
exit 0
