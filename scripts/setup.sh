#!/usr/bin/env bash
# Installs what the tests and the demo need beyond the machine's toolchains
# (Go, Rust, Node, kubectl), when missing: from Debian openssl, git, OpenSSH (the client,
# and the server the private-repository tests run on loopback), for ferry's container
# image umoci, skopeo, runc and strip (binutils), man-db (a test renders the man pages);
# pytest from PyPI.
set -euo pipefail
missing=()
for tool in openssl git umoci skopeo runc; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
command -v man >/dev/null || missing+=(man-db)
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v strip >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${missing[*]}" >&2
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in go cargo kubectl; do
  command -v "$tool" >/dev/null || { echo "[setup] error: $tool is not installed" >&2; exit 1; }
done
# The example app's tests run under pytest.
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install -q pytest
