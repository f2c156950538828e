#!/usr/bin/env bash
# Install the system packages guideplan needs when they are missing:
#  - Xvfb + xauth: a virtual X server for the GUI tests and `make run` without a display,
#  - Qt's xcb platform plugin libraries and GL/EGL for VTK,
#  - dicom3tools (dciodvfy) to validate the DICOM the project writes.
# With apt-get and root it installs them; otherwise it names them and carries on.
set -u

packages=(xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
          libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0
          libgl1 libegl1 libgl1-mesa-dri dicom3tools)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "system-deps: not a Debian-like system; make sure these are installed: ${packages[*]}" >&2
  exit 0
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == *"install ok installed"* ]] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "system-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "system-deps: apt-get failed; install by hand: apt-get install ${missing[*]}" >&2; exit 1; }
else
  echo "system-deps: missing system packages: ${missing[*]}" >&2
  echo "system-deps: install them as root: sudo apt-get install ${missing[*]}" >&2
  echo "system-deps: (GUI tests are skipped without Xvfb; DICOM validation without dciodvfy)" >&2
fi
exit 0
