#!/usr/bin/python3
"""contrib/man-keys.py — rewrites the KEYS list of man/vpcdns.yaml.5 from the "Config file
keys" chapter of docs/configuration.md: one entry per "### `key`" section, its prose, Type,
Range, Default and Example, in mdoc. Run it after adding or changing a key there; then
test_man_pages checks the page against the key table and contrib/check.sh runs mandoc -Tlint.
Touches nothing but the lines between ".Sh KEYS" + ".Bl -tag -width Ds" and the ".El" before
the next ".Sh". Usage: contrib/man-keys.py [--check]   (--check: exit 1 if the page differs)."""
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
PAGE = ROOT / "man" / "vpcdns.yaml.5"


def fail(msg):
    sys.exit("man-keys: " + msg)


def escape(text):
    """Plain text as mdoc text: backslashes and double quotes escaped."""
    return text.replace("\\", "\\e").replace('"', "\\(dq")


def prose(text):
    """A Markdown paragraph as mdoc text lines: code spans quoted, links reduced to their
    text, one sentence a line, no line over 78 columns, none starting with a dot."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    parts = re.split(r"`([^`]+)`", text)
    text = "".join(escape(p) if i % 2 == 0 else "\\(oq" + escape(p) + "\\(cq"
                   for i, p in enumerate(parts))
    text = " ".join(text.split())
    lines = []
    for sentence in re.sub(r"([.!?]\)?) (?=[A-Z\\(0-9])", "\\1\n", text).split("\n"):
        for line in textwrap.wrap(sentence, 78, break_long_words=False, break_on_hyphens=False):
            lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return lines


def entries(doc):
    try:
        chapter = doc.split("\n## Config file keys\n", 1)[1].split("\n## ", 1)[0]
    except IndexError:
        fail("%s has no chapter '## Config file keys'" % DOC)
    out = []
    for section in chapter.split("\n### ")[1:]:
        head, _, body = section.partition("\n")
        name = head.strip().strip("`")
        paragraphs = [p for p in body.strip().split("\n\n") if p.strip()]
        facts = {}
        for line in paragraphs[-1].split("\n"):
            m = re.match(r"- (\w+): (.*)", line)
            if not m:
                fail("%s: key '%s': expected '- Field: value' lines last, got '%s'"
                     % (DOC, name, line))
            facts[m.group(1)] = m.group(2)
        for field in ("Type", "Default", "Example"):
            if field not in facts:
                fail("%s: key '%s' has no '- %s:' line" % (DOC, name, field))
        out.append(".It Ic " + name)
        for i, p in enumerate(paragraphs[:-1]):
            if i > 0:
                out.append(".Pp")
            out.extend(prose(p))
        out += [".Pp", ".Bl -tag -width Default: -compact"]
        for field in ("Type", "Range"):
            if field in facts:
                out += [".It %s:" % field] + prose(facts[field])
        out += [".It Default:", escape(facts["Default"])]
        out += [".It Example:", "\\(oq" + escape(facts["Example"].strip("`")) + "\\(cq", ".El"]
    if not out:
        fail("%s: no '### `key`' sections in 'Config file keys'" % DOC)
    return out


def main():
    page = PAGE.read_text()
    start_mark = "\n.Sh KEYS\n.Bl -tag -width Ds\n"
    start = page.find(start_mark)
    if start < 0:
        fail("%s: expected the lines '.Sh KEYS' and '.Bl -tag -width Ds'" % PAGE)
    start += len(start_mark)
    end = page.find("\n.El\n.Sh ", start)
    if end < 0:
        fail("%s: the KEYS list has no '.El' before the next '.Sh'" % PAGE)
    new = page[:start] + "\n".join(entries(DOC.read_text())) + page[end:]
    if sys.argv[1:] == ["--check"]:
        if new != page:
            fail("%s is not what docs/configuration.md gives: run contrib/man-keys.py" % PAGE)
        return
    if sys.argv[1:]:
        fail("usage: contrib/man-keys.py [--check]")
    PAGE.write_text(new)


if __name__ == "__main__":
    main()
