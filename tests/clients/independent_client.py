#!/usr/bin/env python3
"""An independent Kafka client (confluent-kafka, not Lookout's code): produce alert
events in two encodings, then read the incidents topic until both alerts show up.

usage: independent_client.py BOOTSTRAP produce|consume
Prints one JSON object: what it produced, or the incidents it read.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer

bootstrap, mode = sys.argv[1], sys.argv[2]

if mode == "produce":
    p = Producer({"bootstrap.servers": bootstrap})
    am = {"version": "4", "receiver": "lookout", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "HighLatency", "severity": "critical", "job": "checkout"},
         "annotations": {"summary": "p95 2.1 s"}, "startsAt": "2025-03-04T10:00:00Z", "fingerprint": "py-am-1"}]}
    generic = {"ts": "2025-03-04T10:01:00Z", "kind": "alert", "source": "python", "service": "checkout",
               "severity": "warning", "status": "firing", "title": "checkout queue backing up", "fingerprint": "py-gen-1"}
    for v in (am, generic):
        p.produce("events", json.dumps(v).encode())
    left = p.flush(10)
    print(json.dumps({"produced": 2, "unflushed": left}))
else:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "python-verifier",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["incidents"])
    seen, incidents, deadline = set(), [], time.time() + 60
    while time.time() < deadline and not {"py-am-1", "py-gen-1"} <= seen:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        v = json.loads(m.value())
        incidents.append({"key": m.key().decode() if m.key() else None, "incident_id": v["incident_id"],
                          "seq": v["seq"], "status": v["status"], "schema": v["schema"]})
        seen |= {a["fingerprint"] for a in v["alerts"]}
    c.close()
    print(json.dumps({"fingerprints": sorted(seen), "incidents": incidents}))
