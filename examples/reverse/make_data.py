#!/usr/bin/env python
"""Write a learnable toy task: reverse strings of random symbols (held-out test strings).

Usage: python examples/reverse/make_data.py OUT_DIR [--train 3000] [--seed 0]
Writes OUT_DIR/{train,valid,test}.{src,tgt}; prompts look like ``reverse : a b c =``.
"""
import argparse
import os
import random

ALPHABET = list("abcdefghijklmnop")


def strings(rng, n, exclude=frozenset()):
    out = []
    while len(out) < n:
        s = " ".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 8)))
        if s not in exclude:
            out.append(s)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--train", type=int, default=3000, help="training examples")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    train = strings(rng, a.train)
    held = strings(rng, 300, exclude=frozenset(train))
    os.makedirs(a.out_dir, exist_ok=True)
    for split, rows in (("train", train), ("valid", held[:100]), ("test", held[100:])):
        with open(os.path.join(a.out_dir, f"{split}.src"), "w") as fs, open(os.path.join(a.out_dir, f"{split}.tgt"), "w") as ft:
            for s in rows:
                fs.write(f"reverse : {s} =\n")
                ft.write(" ".join(s.split()[::-1]) + "\n")
    print(f"wrote {len(train)}/100/200 examples to {a.out_dir}")


if __name__ == "__main__":
    main()
