#!/usr/bin/env bash
# Installs the Fedify interop peer outside the work tree: Node 22 (the npm package node-linux-<arch>, which ships the
# binary) and the peer's npm dependencies (package.json beside this script), into
# ${JARDIN_PEERS_DIR:-$HOME/.cache/jardin-peers}. Idempotent: it does nothing when both are already there.
# Needs only npm on PATH (any Node version runs npm; the peer's own install runs under Node 22).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dir="${JARDIN_PEERS_DIR:-$HOME/.cache/jardin-peers}"
node_version="22.23.3"
case "$(uname -m)" in
  x86_64 | amd64) arch="x64" ;;
  aarch64 | arm64) arch="arm64" ;;
  *) echo "install.sh: no Node 22 package for $(uname -m)" >&2; exit 1 ;;
esac

command -v npm >/dev/null || { echo "install.sh: npm is needed on PATH (Debian: apt-get install npm)" >&2; exit 1; }

node_bin="$dir/node22/node_modules/node-linux-$arch/bin/node"
if [ ! -x "$node_bin" ] || [ "$("$node_bin" --version)" != "v$node_version" ]; then
  mkdir -p "$dir/node22"
  npm install --prefix "$dir/node22" --no-save --no-audit --no-fund --loglevel=error "node-linux-$arch@$node_version"
fi

# The stamp is a copy of the package.json that was installed: a changed pin reinstalls.
app="$dir/fedify"
if ! cmp -s "$here/package.json" "$app/.installed-package.json" || [ ! -d "$app/node_modules/@fedify/fedify" ]; then
  mkdir -p "$app"
  cp "$here/package.json" "$app/package.json"
  (cd "$app" && PATH="$(dirname "$node_bin"):$PATH" npm install --no-audit --no-fund --loglevel=error)
  cp "$here/package.json" "$app/.installed-package.json"
fi
echo "Fedify peer ready in $dir (node $("$node_bin" --version))"
