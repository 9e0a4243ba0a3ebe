#!/usr/bin/env python3
"""check_config_doc.py — custody.json(5) is the whole config reference: every
key broker/config.c accepts (its `keys[]` tables) is documented there as
*key*. A key added to the parser without a line in the man page fails here.

    check_config_doc.py CONFIG_C MAN_SCD
"""
import re
import sys


def main():
    config_c, scd = sys.argv[1:3]
    with open(config_c) as f:
        src = f.read()
    keys = set()
    for table in re.findall(r"static const char \*const \w*keys\[\] = \{(.*?)\};", src, re.S):
        keys.update(re.findall(r'"([a-z_]+)"', table))
    with open(scd) as f:
        doc = f.read()
    missing = sorted(k for k in keys if "*%s*" % k not in doc)
    if not keys:
        print("FAIL: no key tables found in %s" % config_c, file=sys.stderr)
        return 1
    if missing:
        print("FAIL: custody.json(5) does not document these config keys: %s; add each to "
              "man/custody.json.5.scd (type, default, range, what it does)" % ", ".join(missing),
              file=sys.stderr)
        return 1
    print("ok: custody.json(5) documents all %d keys config.c accepts" % len(keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
