#!/usr/bin/env python3
"""build_man.py — scdoc, then tidy its roff so `mandoc -T lint` is clean.

    build_man.py SCDOC INPUT.scd OUTPUT

scdoc 1.11 writes a paragraph macro (.P) around every heading and block,
which mandoc reports as "PP after SH" and "PP empty" (a .P that ends an
indented block moves after its .RE instead); it keeps source lines
as they are (over 80 bytes once escapes are added) and writes the title in
lower case. This drops the redundant .P lines, wraps long text lines at a
space (never inside .nf literal blocks, never so a line starts with a
control character) and upper-cases the .TH title. The text is unchanged.
"""
import subprocess
import sys

DROP_AFTER = (".SH", ".SS", ".TH", ".RS", ".P", ".IP")
DROP_BEFORE = (".SH", ".SS", ".P", ".RE", ".TH", ".IP")


def macro(line):
    return line.split(" ", 1)[0] if line.startswith(".") else None


def wrap(line, width=78):
    out = []
    while len(line) > width:
        cut = line.rfind(" ", 0, width)
        while cut > 0 and line[cut + 1:cut + 2] in (".", "'"):
            cut = line.rfind(" ", 0, cut)
        if cut <= 0:
            break
        out.append(line[:cut])
        line = line[cut + 1:]
    out.append(line)
    return out


def main():
    scdoc, src, dst = sys.argv[1:4]
    with open(src, "rb") as f:
        p = subprocess.run([scdoc], stdin=f, capture_output=True)
    if p.returncode != 0:
        sys.exit("%s: %s" % (src, p.stderr.decode(errors="replace").strip()))
    roff = p.stdout
    lines = roff.decode().split("\n")
    kept = []
    literal = False
    for i, line in enumerate(lines):
        m = macro(line)
        if m == ".nf":
            literal = True
        elif m == ".fi":
            literal = False
        nxt = next((macro(x) or "text" for x in lines[i + 1:] if x.strip()), ".SH")
        if m == ".P":
            prev = macro(kept[-1]) if kept else ".TH"
            if prev in DROP_AFTER or nxt in DROP_BEFORE:
                continue
        if m == ".RE" and macro(kept[-1] if kept else "") != ".P" and \
                lines[i - 1].strip() == ".P" and nxt not in DROP_BEFORE:
            # the space that ended the indented block goes after it
            kept.append(line)
            kept.append(".P")
            continue
        if m == ".TH":
            parts = line.split('"')
            parts[1] = parts[1].upper()
            line = '"'.join(parts)
        if m is None and not literal and len(line) > 78:
            kept.extend(wrap(line))
        else:
            kept.append(line)
    with open(dst, "w") as f:
        f.write("\n".join(kept))


if __name__ == "__main__":
    main()
