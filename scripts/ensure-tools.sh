#!/usr/bin/env bash
# Makes sure each named command exists, installing its Debian package with apt-get when it is absent and
# we are root. Otherwise it says what to install and fails.
set -euo pipefail

declare -A PACKAGE=([redis-server]=redis-server [redis-cli]=redis-tools [redis-benchmark]=redis-tools
  [promtool]=prometheus [prometheus]=prometheus)

# kubectl (its built-in kustomize renders deploy/kubernetes) is never installed here: Debian's package,
# kubernetes-client, is 1.20, whose kustomize cannot build these manifests, and a pinned binary from the
# Kubernetes release site cannot be fetched offline. So this only checks it (present, kustomize v5 or
# later) and otherwise says where to get it.
KUBECTL_HELP="kubectl 1.27 or later (kustomize v5): the kubectl package from the Kubernetes apt repository
(pkgs.k8s.io) or from Google Cloud's (google-cloud-cli), or a release binary put on PATH"
if [[ " $* " == *" kubectl "* ]] && command -v kubectl >/dev/null 2>&1; then
  kustomize=$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"kustomizeVersion": *"v\{0,1\}\([0-9]*\).*/\1/p')
  if [ -z "$kustomize" ] || [ "$kustomize" -lt 5 ]; then
    echo "quotad's manifests need $KUBECTL_HELP; this kubectl embeds kustomize '${kustomize:-unknown}'." >&2
    exit 1
  fi
fi

missing=()
for command in "$@"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("$command")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [[ " ${missing[*]} " == *" kubectl "* ]]; then
  echo "quotad needs $KUBECTL_HELP." >&2
  exit 1
fi

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
