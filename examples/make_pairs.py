#!/usr/bin/env python3
"""Seeded generators of `source<TAB>target` pairs for `gpurnn train --mode pairs`.

Usage: python3 examples/make_pairs.py reverse|dates [COUNT] [SEED] > pairs.tsv
  reverse: short strings over a-e and their reversal, e.g. `abcd<TAB>dcba`
  dates:   human-readable dates and their ISO form, e.g. `3 March 1998<TAB>1998-03-03`,
           `03/03/98<TAB>1998-03-03`, `1998 mar 3<TAB>1998-03-03`
"""
import datetime
import random
import sys

MONTHS = ["January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December"]


def formats(d):
    m = MONTHS[d.month - 1]
    return [
        f"{d.day} {m} {d.year}",              # 3 March 1998
        f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}",  # 03/03/98 (day first)
        f"{m} {d.day}, {d.year}",             # March 3, 1998
        f"{d.day} {m[:3]} {d.year}",          # 3 Mar 1998
        f"{d.year} {m[:3].lower()} {d.day}",  # 1998 mar 3
        f"{d.day:02d}.{d.month:02d}.{d.year}",  # 03.03.1998
    ]


def dates(rng):
    start = datetime.date(1950, 1, 1).toordinal()
    end = datetime.date(2049, 12, 31).toordinal()  # two-digit years stay unambiguous: 50-99 → 19xx, 00-49 → 20xx
    d = datetime.date.fromordinal(rng.randint(start, end))
    return rng.choice(formats(d)), d.isoformat()


def reverse(rng):
    word = "".join(rng.choice("abcde") for _ in range(rng.randint(2, 4)))
    return word, word[::-1]


def main():
    tasks = {"reverse": reverse, "dates": dates}
    if len(sys.argv) < 2 or sys.argv[1] not in tasks:
        sys.exit("usage: make_pairs.py reverse|dates [COUNT] [SEED]")
    task = tasks[sys.argv[1]]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    for _ in range(count):
        source, target = task(rng)
        print(f"{source}\t{target}")


if __name__ == "__main__":
    main()
