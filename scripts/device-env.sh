#!/usr/bin/env bash
# Sourced on the GPU machine (Ubuntu, no libjansson/cmocka/libyaml): unpacks the Debian
# packages carried in .deb/ (fetch them here with `scripts/device-fetch-debs.sh`) and in
# build-gpu/deb/ (runtime libraries of prebuilt binaries, `scripts/gpu-prebuild.sh`) into
# /tmp/debroot and points the compiler and loader at them.
#   source scripts/device-env.sh && make core
R=/tmp/debroot
mkdir -p "$R/.stamps"
for f in .deb/*.deb build-gpu/deb/*.deb; do
  [ -e "$f" ] || continue
  s="$R/.stamps/$(basename "$f")"
  [ -e "$s" ] || { dpkg -x "$f" "$R" && touch "$s"; }
done
L=$R/usr/lib/x86_64-linux-gnu
# Debian's openblas-pthread keeps libopenblas in a subfolder
export CPATH=$R/usr/include:$R/usr/include/x86_64-linux-gnu/openblas-pthread${CPATH:+:$CPATH}
export LIBRARY_PATH=$L:$L/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$L:$L/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/usr/local/cuda/bin:$PATH
export SUSHI_DEVICE_ENV=1
