#!/usr/bin/env bash
# Start the GUI; without a display (a server, CI) run it on a virtual X screen.
set -u
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  exec "$@"
fi
if command -v xvfb-run >/dev/null 2>&1; then
  echo "run: no display found; starting guideplan on a virtual screen (xvfb-run)" >&2
  exec xvfb-run -a -s "-screen 0 1600x1000x24" "$@"
fi
echo "run: no display and no xvfb-run: set DISPLAY or install xvfb" >&2
exit 1
