#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine with the Swift toolchain on PATH: installs the system libraries,
# builds the release binary and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libopenblas-dev libpng-dev libturbojpeg0-dev zlib1g-dev pkg-config)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

swift build -c release --product swiftdiffusion
# The main job: a picture from the embedded default model (models/shapes-sd).
./.build/release/swiftdiffusion generate --seed 7 -o swiftdiffusion-first.png \
    "a red circle in the center, blue background"
echo "Wrote $(pwd)/swiftdiffusion-first.png"
