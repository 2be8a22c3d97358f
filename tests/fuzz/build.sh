#!/bin/sh
# build.sh — builds the libFuzzer harnesses of tests/fuzz/ with clang straight from resolver/
# (everything but main.c), with ASan and UBSan:
#     tests/fuzz/build.sh OUTDIR
# Needs clang with libFuzzer (Debian: apt-get install clang libclang-rt-14-dev) and the
# development packages of libuv, c-ares, ldns, cJSON, libyaml and libcurl. CC overrides clang.
set -eu

if [ $# -ne 1 ]; then
        echo "usage: $0 OUTDIR" >&2
        exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)
cc=${CC:-clang}

san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
cflags="-g -O1 -fno-omit-frame-pointer -std=gnu11 -Wall -Wextra -Wno-unused-parameter"
cflags="$cflags -I$src/include -I$here -D_GNU_SOURCE -DVD_SOURCE_DIR=\"$src\""
cflags="$cflags $(pkg-config --cflags libuv libcares ldns libcjson yaml-0.1 libmicrohttpd libfstrm libcurl)"
libs=$(pkg-config --libs libuv libcares ldns libcjson yaml-0.1 libmicrohttpd libfstrm libcurl)

# The library objects once, instrumented for coverage (fuzzer-no-link: no second main).
objdir="$out/obj"
mkdir -p "$objdir"
objs=""
for f in "$src"/resolver/*.c "$here/fuzz_util.c"; do
        name=$(basename "$f" .c)
        [ "$name" = main ] && continue
        # shellcheck disable=SC2086
        $cc $cflags -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
                -c "$f" -o "$objdir/$name.o"
        objs="$objs $objdir/$name.o"
done

for target in query relay aws zonefile hosted_zone config tcp; do
        # shellcheck disable=SC2086
        $cc $cflags $san "$here/fuzz_$target.c" $objs $libs -o "$out/fuzz_$target"
        echo "built $out/fuzz_$target"
done
