#!/usr/bin/env bash
# Installs Mesa's lavapipe (a software Vulkan device running on the CPU) so that Burn's Wgpu
# backend runs here without a GPU: the same CubeCL kernels a GPU runs. Idempotent; needs root
# (or sudo) and apt. Debian/Ubuntu package names.
set -euo pipefail
"$(dirname "$0")/apt_install.sh" mesa-vulkan-drivers libvulkan1 vulkan-tools
echo "Vulkan devices:"
vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverInfo|apiVersion' || true
