#!/usr/bin/env bash
# Makes sure each named command exists, installing its Debian package with apt-get when it is absent and
# we are root. Otherwise it says what to install and fails.
set -euo pipefail

declare -A PACKAGE=([redis-server]=redis-server [redis-cli]=redis-tools [redis-benchmark]=redis-tools)

missing=()
for command in "$@"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("$command")
done
[ ${#missing[@]} -eq 0 ] && exit 0

packages=()
for command in "${missing[@]}"; do packages+=("${PACKAGE[$command]:-$command}"); done

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${packages[*]} (for ${missing[*]}) with apt-get..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  exit 0
fi

echo "quotad needs ${missing[*]} on PATH. Install the Debian/Ubuntu package(s) ${packages[*]}" >&2
echo "(e.g. sudo apt-get install ${packages[*]}), or your platform's equivalent, and run make again." >&2
exit 1
