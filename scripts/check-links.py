"""make lint: every relative link in the project's Markdown (the README, docs/, the
papers beside them) names a file that exists and, with `#anchor`, a heading of that
file (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens). Links to
other sites are not followed (the checks run offline). Exits 1 naming each broken one.

Usage: check-links.py FILE.md ...
"""
import os
import re
import sys

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def anchors(path):
    found, fence = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if FENCE.match(line):
                fence = not fence
                continue
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m and not fence:
                text = re.sub(r"[`*_]", "", m.group(1)).strip().lower()
                slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
                base, n = slug, 1
                while slug in found:
                    slug, n = f"{base}-{n}", n + 1
                found.add(slug)
    return found


def links(path):
    fence = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                fence = not fence
                continue
            if not fence:
                for target in LINK.findall(line):
                    yield number, target


def main(files):
    broken = []
    for path in files:
        for number, target in links(path):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(dest):
                broken.append(f"{path}:{number}: {target}: no such file")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                broken.append(f"{path}:{number}: {target}: no heading #{anchor} in {dest}")
    for b in broken:
        print(f"check-links: {b}", file=sys.stderr)
    print(f"check-links: {len(files)} file(s), {len(broken)} broken link(s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
