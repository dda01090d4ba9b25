#!/usr/bin/env python3
"""Drain3's mining speed on the same messages as `cargo bench --bench templates`
(the Loghub-2k systems beside this repository, each system's line format applied),
one core, default Drain3 configuration, one warm TemplateMiner per system.

usage: python3 benches/drain3_baseline.py [LOGHUB_DIR]     (pip install drain3)
Prints lines/s; the Rust bench's `templates/loghub` throughput divided by it is the ratio.
"""
import json, os, re, sys, time

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

def content_regex(fmt):
    parts = re.split(r"(<[^<>]+>)", fmt)
    out = ""
    for p in parts:
        if p.startswith("<") and p.endswith(">"):
            out += "(?P<%s>.*?)" % p[1:-1]
        else:
            out += re.sub(" +", r"\\s+", p)
    return re.compile("^" + out + "$")

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data", "loghub")
    settings = json.load(open(os.path.join(d, "settings.json")))["systems"]
    systems = []
    for name, s in settings.items():
        path = os.path.join(d, s["log_file"])
        if not os.path.exists(path):
            continue
        rx = content_regex(s["log_format"])
        msgs = []
        for line in open(path, encoding="utf-8", errors="replace"):
            m = rx.match(line.strip())
            msgs.append(m.group("Content") if m else line.strip())
        systems.append(msgs)
    miners = [TemplateMiner(config=TemplateMinerConfig()) for _ in systems]
    for m, msgs in zip(miners, systems):
        for msg in msgs:
            m.add_log_message(msg)
    lines = sum(len(s) for s in systems)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for m, msgs in zip(miners, systems):
            for msg in msgs:
                m.add_log_message(msg)
        best = max(best, lines / (time.perf_counter() - t))
    print(f"drain3 {lines} lines: {best:,.0f} lines/s (best of 3 warm passes)")

if __name__ == "__main__":
    main()
