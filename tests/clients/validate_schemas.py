"""Validates JSON lines against Lookout's JSON Schemas (an independent check: Python's
jsonschema, not Lookout's code).

    python3 validate_schemas.py SCHEMA_DIR TOPIC=FILE [TOPIC=FILE ...]

TOPIC is incidents, anomalies, trend-reports or dead-letters; FILE holds one JSON message per line, or
`topic<TAB>json` lines (the golden outputs), of which only that topic's are read.
Prints `TOPIC: N valid` per file; exits 1 at the first invalid message, saying why.
"""
import json
import sys

import jsonschema

SCHEMAS = {
    "incidents": "incident.v1",
    "anomalies": "anomaly.v1",
    "trend-reports": "trend_report.v1",
    "dead-letters": "dead_letter.v1",
}


def main():
    schema_dir = sys.argv[1]
    for arg in sys.argv[2:]:
        topic, path = arg.split("=", 1)
        with open(f"{schema_dir}/{SCHEMAS[topic]}.schema.json") as f:
            schema = json.load(f)
        validator = jsonschema.Draft202012Validator(schema)
        n = 0
        with open(path) as f:
            for i, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line:
                    continue
                if "\t" in line and not line.startswith("{"):
                    t, line = line.split("\t", 1)
                    if t != topic:
                        continue
                error = jsonschema.exceptions.best_match(validator.iter_errors(json.loads(line)))
                if error is not None:
                    where = "/".join(str(p) for p in error.absolute_path)
                    print(f"{path}:{i}: {topic}: {error.message} at /{where}")
                    sys.exit(1)
                n += 1
        print(f"{topic}: {n} valid ({path})")


if __name__ == "__main__":
    main()
