#!/usr/bin/env bash
# Downloads (here, on Debian) the library packages the GPU machine lacks into .deb/,
# which git ignores and the device run carries.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deb && cd .deb
apt-get download libjansson4 libjansson-dev libcmocka0 libcmocka-dev libopenblas-dev \
  libopenblas0-pthread libopenblas-pthread-dev libopenblas0 libyaml-0-2 libyaml-dev libicu72 libicu-dev \
  libpcre2-8-0 libpcre2-dev
