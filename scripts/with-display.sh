#!/usr/bin/env bash
# Run a command with an X display: the user's own, or a virtual one (xvfb-run) when there
# is none (servers, CI). Qt's xcb platform and VTK's on-screen windows both need it.
set -u
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  exec "$@"
fi
if command -v xvfb-run >/dev/null 2>&1; then
  echo "no display found: running on a virtual screen (xvfb-run)" >&2
  exec xvfb-run -a -s "-screen 0 1600x1000x24" "$@"
fi
echo "no display and no xvfb-run: GUI parts are skipped (install xvfb, or set DISPLAY)" >&2
exec "$@"
