#!/usr/bin/env bash
# Installs Mesa's lavapipe (a software Vulkan device running on the CPU) so that Burn's Wgpu
# backend runs here without a GPU: the same CubeCL kernels a GPU runs. Idempotent; needs root
# (or sudo) and apt. Debian/Ubuntu package names.
set -euo pipefail
packages=(mesa-vulkan-drivers libvulkan1 vulkan-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
echo "Vulkan devices:"
vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverInfo|apiVersion' || true
