#!/usr/bin/env python3
"""An independent OTLP producer (the OpenTelemetry project's own Python classes from
opentelemetry-proto, and confluent-kafka; not Lookout's code): writes OTLP logs and
metrics to Kafka as the Collector's Kafka exporter does (otlp_proto, and otlp_json with
OTLP's JSON mapping), then reads the incidents topic until both faults show up.

usage: otlp_producer.py BOOTSTRAP produce|consume
Prints one JSON object.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_FATAL, SEVERITY_NUMBER_INFO

T0 = 1741082400 * 10**9  # 2025-03-04T10:00:00Z in nanoseconds


def resource(rs, service, host):
    rs.resource.attributes.extend([
        KeyValue(key="service.name", value=AnyValue(string_value=service)),
        KeyValue(key="host.name", value=AnyValue(string_value=host)),
        KeyValue(key="deployment.environment", value=AnyValue(string_value="prod")),
    ])


def logs():
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    resource(rl, "payments", "payments-1")
    sl = rl.scope_logs.add()
    for i, (sev, text, body) in enumerate([
        (SEVERITY_NUMBER_INFO, "INFO", "payment accepted for order ord_1"),
        (SEVERITY_NUMBER_FATAL, "FATAL", "OutOfMemoryError in CardTokenizer"),
    ]):
        r = sl.log_records.add()
        r.time_unix_nano = T0 + i * 10**9
        r.severity_number = sev
        r.severity_text = text
        r.body.string_value = body
        r.attributes.append(KeyValue(key="thread", value=AnyValue(string_value="worker-7")))
        r.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    return req


def metrics():
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    resource(rm, "checkout", "checkout-1")
    sm = rm.scope_metrics.add()
    g = sm.metrics.add()
    g.name = "error_ratio"
    p = g.gauge.data_points.add()
    p.time_unix_nano = T0 + 5 * 10**9
    p.as_double = 0.35
    h = sm.metrics.add()
    h.name = "http_server_duration_ms"
    hp = h.histogram.data_points.add()
    hp.time_unix_nano = T0 + 5 * 10**9
    hp.count = 40
    hp.sum = 5200.0
    hp.bucket_counts.extend([10, 30])
    hp.explicit_bounds.extend([100.0])
    return req


bootstrap, mode = sys.argv[1], sys.argv[2]
if mode == "produce":
    p = Producer({"bootstrap.servers": bootstrap})
    lg, mt = logs(), metrics()
    p.produce("logs", lg.SerializeToString())
    p.produce("metrics", mt.SerializeToString())
    # otlp_json: OTLP's JSON mapping (enums as numbers); the trace id is left out, as
    # OTLP JSON writes ids in hex where protobuf's JSON writes base64
    lj = MessageToDict(lg, use_integers_for_enums=True)
    for rl in lj["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for r in sl["logRecords"]:
                r.pop("traceId", None)
                r["timeUnixNano"] = str(int(r["timeUnixNano"]) + 60 * 10**9)
    p.produce("logs", json.dumps(lj).encode())
    mj = MessageToDict(mt, use_integers_for_enums=True)
    p.produce("metrics", json.dumps(mj).encode())
    left = p.flush(10)
    print(json.dumps({"produced": 4, "unflushed": left}))
else:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "otlp-verifier",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["incidents"])
    titles, deadline = set(), time.time() + 60
    want = ("FATAL log on payments", "checkout: error ratio 0.35")
    while time.time() < deadline and not all(any(w in t for t in titles) for w in want):
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        v = json.loads(m.value())
        titles |= {a["title"] for a in v["alerts"]}
    c.close()
    print(json.dumps({"titles": sorted(titles)}))
