#!/usr/bin/python3
"""preads.py PATH [--count 200] [--size 4096] [--seed 6] [--verify REF] [--unaligned]

Times COUNT positioned reads of SIZE bytes at random offsets (fixed seed) of
PATH with os.pread, one after the other on one descriptor, and prints one
JSON object: open_s (open(2)), reads_s (sum of the reads), total_s (open +
reads), worst_s and worst_offset (the slowest single read), mean_s, p50_s,
p99_s, bytes, count.  Offsets are SIZE-aligned unless --unaligned; they are
drawn before the clock starts.  With --verify REF the same offsets are read
from REF afterwards (untimed) and `verified` says whether every read matched.
Standard library only.
"""
import argparse
import json
import os
import random
import statistics
import time
import zlib


def offsets(size, count, bs, seed, unaligned):
    rng = random.Random(seed)
    if unaligned:
        return [rng.randrange(0, max(1, size - bs + 1)) for _ in range(count)]
    return [rng.randrange(0, max(1, (size - bs) // bs + 1)) * bs for _ in range(count)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--file-size", type=int, help="skip the stat (else stat(2), untimed)")
    ap.add_argument("--unaligned", action="store_true")
    ap.add_argument("--verify")
    a = ap.parse_args()
    size = a.file_size if a.file_size is not None else os.stat(a.path).st_size
    offs = offsets(size, a.count, a.size, a.seed, a.unaligned)
    clock = time.perf_counter
    t0 = clock()
    fd = os.open(a.path, os.O_RDONLY)
    t_open = clock() - t0
    times, sums, nbytes = [], [], 0
    for off in offs:
        t = clock()
        b = os.pread(fd, a.size, off)
        times.append(clock() - t)
        sums.append((len(b), zlib.crc32(b)))
        nbytes += len(b)
    os.close(fd)
    worst = max(range(len(times)), key=times.__getitem__) if times else 0
    st = sorted(times)
    out = {"path": a.path, "file_size": size, "count": a.count, "size": a.size, "seed": a.seed,
           "open_s": t_open, "reads_s": sum(times), "total_s": t_open + sum(times),
           "worst_s": times[worst] if times else 0.0, "worst_offset": offs[worst] if offs else 0,
           "mean_s": statistics.mean(times) if times else 0.0,
           "p50_s": st[len(st) // 2] if st else 0.0,
           "p99_s": st[min(len(st) - 1, int(len(st) * 0.99))] if st else 0.0,
           "bytes": nbytes}
    if a.verify:
        fd = os.open(a.verify, os.O_RDONLY)
        ok = all((len(b), zlib.crc32(b)) == s
                 for b, s in ((os.pread(fd, a.size, off), s) for off, s in zip(offs, sums)))
        os.close(fd)
        out["verified"] = ok
    print(json.dumps(out))


if __name__ == "__main__":
    main()
