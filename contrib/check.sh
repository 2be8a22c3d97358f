#!/usr/bin/env bash
# contrib/check.sh — static checks on the C sources, run first by contrib/test.sh:
#   1. no bare assert(), sprintf(), vsprintf(), strcpy(), strcat() or gets() in the C files
#      of resolver/, include/, bench/ and tests/fuzz/ (use VD_CHECK, snprintf, memcpy with
#      checked lengths); comments and string literals are ignored, snprintf/VD_CHECK/fgets are
#      fine;
#   2. every C file of the repository is formatted per .clang-format (clang-format 14);
#   3. every man page (man/*.1, *.5, *.8) is clean under mandoc -Tlint, style messages
#      included, except those about which pages the host has installed (an Xr to a page
#      it lacks, an outdated mandoc.db): they say nothing about our pages; and the key
#      entries of man/vpcdns.yaml.5 are what contrib/man-keys.py makes of
#      docs/configuration.md.
# Prints every offending file and line and exits 1 when anything is wrong, 0 otherwise.
# Usage: contrib/check.sh [ROOT]   (ROOT defaults to the repository holding this script)
set -euo pipefail

root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root"
clang_format=${CLANG_FORMAT:-clang-format}
failed=0

# Every C file of the tree, tracked or new, except build trees and hidden directories.
mapfile -t c_files < <(find . \( -name '.?*' -o -name 'build' -o -name 'build-*' \) -prune -o \
        -type f \( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||' | LC_ALL=C sort)

banned_dirs=(resolver include bench tests/fuzz)
banned_files=()
for f in "${c_files[@]}"; do
        for d in "${banned_dirs[@]}"; do
                if [[ $f == "$d"/* ]]; then
                        banned_files+=("$f")
                fi
        done
done

echo "check: banned calls in ${#banned_files[@]} files of ${banned_dirs[*]}"
if ((${#banned_files[@]} > 0)); then
        # Blank out comments, string and character literals (keeping line numbers), then
        # look for a call of a banned name: word boundary, optional blanks, "(".
        if ! /usr/bin/python3 - "${banned_files[@]}" <<'EOF'; then
import re
import sys

BANNED = re.compile(r"(?<![A-Za-z0-9_])(assert|sprintf|vsprintf|strcpy|strcat|gets)\s*\(")
ADVICE = {
    "assert": "use VD_CHECK (include/vpcdns/common.h)",
    "sprintf": "use snprintf",
    "vsprintf": "use vsnprintf",
    "strcpy": "use memcpy with a checked length",
    "strcat": "use memcpy with a checked length",
    "gets": "use fgets",
}
TOKEN = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def blank(m):
    text = m.group(0)
    if text.startswith(("//", "/*")):
        return re.sub(r"[^\n]", " ", text)
    return text[0] + re.sub(r"[^\n]", " ", text[1:-1]) + text[-1]


bad = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8", errors="replace") as f:
        src = f.read()
    code = TOKEN.sub(blank, src)
    lines = src.split("\n")
    for m in BANNED.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        name = m.group(1)
        print("%s:%d: banned %s(): %s\n    %s" % (path, line, name, ADVICE[name], lines[line - 1].strip()))
        bad += 1
sys.exit(1 if bad else 0)
EOF
                failed=1
        fi
fi

echo "check: clang-format ($($clang_format --version | sed 's/.*version //')) on ${#c_files[@]} C files"
unformatted=()
for f in "${c_files[@]}"; do
        if ! "$clang_format" --dry-run -Werror "$f" >/dev/null 2>&1; then
                unformatted+=("$f")
        fi
done
if ((${#unformatted[@]} > 0)); then
        for f in "${unformatted[@]}"; do
                echo "$f: not formatted per .clang-format; the changes clang-format wants:"
                "$clang_format" "$f" | diff -u "$f" - | sed -n '3,40p' | sed 's/^/    /' || true
        done
        echo "fix with: clang-format -i ${unformatted[*]}"
        failed=1
fi

mapfile -t man_pages < <(find man -maxdepth 1 -type f -name '*.[158]' 2>/dev/null | LC_ALL=C sort)
echo "check: mandoc -Tlint on ${#man_pages[@]} man pages"
if ((${#man_pages[@]} > 0)); then
        if ! command -v mandoc >/dev/null; then
                echo "check: mandoc not found (apt-get install mandoc; it is in VD_DEPS)"
                failed=1
        else
                lint=$(mandoc -Tlint -W style "${man_pages[@]}" 2>&1 |
                        grep -v -e 'referenced manual not found' -e 'outdated mandoc.db' || true)
                if [[ -n $lint ]]; then
                        printf '%s\n' "$lint"
                        failed=1
                fi
        fi
fi
if [[ -f man/vpcdns.yaml.5 ]] && ! /usr/bin/python3 contrib/man-keys.py --check; then
        failed=1
fi

if ((failed)); then
        echo "check: FAILED" >&2
        exit 1
fi
echo "check: ok"
