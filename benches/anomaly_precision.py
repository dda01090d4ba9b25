#!/usr/bin/env python3
"""How often Lookout's log anomalies fall inside a labelled incident on their service.

usage: python3 benches/log_anomaly_precision.py TRUTH.json ANOMALIES.jsonl
An anomaly counts when its service is the incident's root cause or one of its affected
services and its time is between 2 minutes before the onset and 10 minutes after the end.
Prints, per kind (series: one metric or log-error series; new_template, burst,
unusual_mix: logs; unusual_signals: a service's signals together): anomalies, the share
inside an incident, and how many incidents got at least one. With --after, only
anomalies at or after TIME (RFC 3339) count: those after a model's training range.
"""
import json, sys
from datetime import datetime

def t(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

def main():
    truth = json.load(open(sys.argv[1]))["incidents"]
    anomalies = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
    if len(sys.argv) == 5 and sys.argv[3] == "--after":
        anomalies = [a for a in anomalies if t(a["ts"]) >= t(sys.argv[4])]
    for kind in ["series", "new_template", "burst", "unusual_mix", "unusual_signals"]:
        n = inside = 0
        hit = set()
        for a in anomalies:
            if a.get("kind", "series") != kind:
                continue
            n += 1
            ts, svc = t(a["ts"]), a["series"]["service"]
            keys = [i["key"] for i in truth
                    if svc in set(i["affected_services"]) | {i["root_cause_service"]}
                    and t(i["onset"]) - 120 <= ts <= t(i["end"]) + 600]
            if keys:
                inside += 1
                hit.update(keys)
        share = f"{inside / n:.0%}" if n else "-"
        print(f"{kind:<15} {n:>4} anomalies, {share:>4} inside an incident on their service, incidents with one: {len(hit)}/{len(truth)}")

if __name__ == "__main__":
    main()
