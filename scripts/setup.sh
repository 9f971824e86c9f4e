#!/usr/bin/env bash
# Installs what gpu-activations needs on a Debian/Ubuntu machine, and nothing that is already
# there: a Rust toolchain if cargo is missing, and Mesa's software drivers (lavapipe for Vulkan,
# llvmpipe for GL) when no Vulkan driver is installed. Sourced by scripts/demo.sh and
# scripts/test.sh; safe to run twice. With GPU_ACTIVATIONS_SETUP=test (scripts/test.sh) it also
# installs what the test suite checks against: lavapipe even beside another Vulkan driver,
# SwiftShader's Vulkan driver and Chromium's WebGPU (the `chromium` package ships both;
# Debian has no lighter source of SwiftShader), chromedriver, the Khronos validation layer
# and spirv-tools, and adds SwiftShader to the Vulkan loader's drivers.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; return 1; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup" >&2
    command -v curl >/dev/null || apt_install curl ca-certificates
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if command -v dpkg-query >/dev/null; then
  missing=()
  # A Vulkan driver: lavapipe when no other ICD is installed.
  if ! compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null &&
     ! compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null; then
    missing+=(mesa-vulkan-drivers)
  fi
  # The Vulkan loader and EGL/GL (llvmpipe) for the GL backend.
  for pkg in libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ "${GPU_ACTIVATIONS_SETUP:-}" = test ]; then
    for pkg in mesa-vulkan-drivers chromium chromium-driver vulkan-validationlayers spirv-tools; do
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
  fi
fi

# SwiftShader's Vulkan driver (from the chromium package) beside the system's drivers: the
# loader then lists lavapipe and SwiftShader, and the tests run on both.
swiftshader_icd=/usr/lib/chromium/vk_swiftshader_icd.json
if [ "${GPU_ACTIVATIONS_SETUP:-}" = test ] && [ -f "$swiftshader_icd" ]; then
  case ":${VK_ADD_DRIVER_FILES:-}:" in
    *":$swiftshader_icd:"*) ;;
    *) export VK_ADD_DRIVER_FILES="${VK_ADD_DRIVER_FILES:+$VK_ADD_DRIVER_FILES:}$swiftshader_icd" ;;
  esac
fi

# Mesa's window-system code warns without this; a private directory keeps it quiet.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/gpu-activations-xdg-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
