#!/usr/bin/env bash
# Makes a Wine prefix that runs Rust programs built for x86_64-pc-windows-gnu.
#
#   WINEPREFIX=/some/dir bash ci/wine/setup.sh
#
# Needs wine and x86_64-w64-mingw32-gcc (ci/test.sh installs them). Creates the prefix if it
# does not exist yet and puts the ProcessPrng shim (processprng.c) into its system32: Wine 8.0
# has no bcryptprimitives.dll, which every Rust program since Rust 1.78 imports.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${WINEPREFIX:?set WINEPREFIX to the prefix to create or update}"
export WINEDEBUG="${WINEDEBUG:--all}"

if [ ! -f "$WINEPREFIX/system.reg" ]; then
    mkdir -p "$WINEPREFIX"
    wineboot -i >/dev/null 2>&1
    wineserver -w
fi
dll="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$dll" ] || [ "$here/processprng.c" -nt "$dll" ]; then
    x86_64-w64-mingw32-gcc -O2 -shared -o "$dll" "$here/processprng.c" -ladvapi32 -Wl,--kill-at
fi
