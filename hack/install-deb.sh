#!/usr/bin/env bash
# Installs a command the tests need from Debian's packages, when it is not on PATH already:
#   hack/install-deb.sh PACKAGE COMMAND [OTHER_NAME...]
# e.g. `chromium chromium chromium-browser` for the browser tests (server/, report/),
# `prometheus promtool` for deploy/'s alert tests, `nftables nft` for the sandbox's real node.
# A COMMAND with a slash is a file the package installs (`libseccomp-dev /usr/include/seccomp.h`). Idempotent; only the distribution's package
# registry is used (nothing else is reachable from CI). Needs root or sudo, and apt-get.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 PACKAGE COMMAND [OTHER_NAME...]" >&2
  exit 2
fi
pkg=$1
shift
cmd=$1

# have NAME: the path of a command on PATH (or in /usr/sbin, where Debian puts iptables and
# friends and a non-root PATH may not look), or of a file given by its path.
have() {
  if [[ $1 == */* ]]; then
    [[ -e $1 ]] && echo "$1"
  else
    command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; }
  fi
}

for name in "$@"; do
  if path=$(have "$name"); then
    echo "install-deb: $name already installed at $path; nothing to do"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deb: $cmd is not on PATH and apt-get is missing:" >&2
  echo "  install the $pkg package with this system's package manager, or run the tests with -short to skip the tests that need $cmd" >&2
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deb: installing $pkg needs root; run this script as root" >&2
    exit 1
  fi
  sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deb: $cmd not found; running apt-get update"
"${sudo[@]}" apt-get update -q
# prometheus' post-install would start a service where systemd runs; only promtool is needed,
# and policy-rc.d keeps services from starting in containers.
echo "install-deb: running apt-get install -y $pkg"
"${sudo[@]}" apt-get install -y -q --no-install-recommends "$pkg"

if ! path=$(have "$cmd"); then
  echo "install-deb: apt-get install $pkg succeeded but $cmd is still not on PATH" >&2
  exit 1
fi
if [[ $cmd == */* ]]; then
  echo "install-deb: installed $path"
else
  echo "install-deb: installed $path ($("$path" --version 2>/dev/null | head -1 || echo 'version unknown'))"
fi
