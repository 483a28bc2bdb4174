"""A Singer tap for idsync's Singer connector tests: `--config FILE` names a JSON file with
`rows` (each with an `id` and a `version`); with `--state FILE` only rows with a version above
the state's bookmark are sent; the last STATE is the highest version. `fail` in the config
makes it exit 2 half way, after a line on standard error."""
import argparse, json, sys

p = argparse.ArgumentParser()
p.add_argument("--config", required=True)
p.add_argument("--state")
p.add_argument("--catalog")
a = p.parse_args()
config = json.load(open(a.config))
since = json.load(open(a.state))["bookmarks"]["people"]["version"] if a.state else 0

def send(m):
    print(json.dumps(m), flush=True)

send({"type": "SCHEMA", "stream": "people", "key_properties": ["id"],
      "schema": {"type": "object", "properties": {
          "id": {"type": "string"}, "version": {"type": "integer"},
          "since": {"type": ["string", "null"], "format": "date-time"},
          "tags": {"type": "array", "items": {"type": "string"}}}}})
send({"type": "SCHEMA", "stream": "audit", "key_properties": ["n"], "schema": {"properties": {}}})
send({"type": "RECORD", "stream": "audit", "record": {"n": 1}})
top = since
for row in config["rows"]:
    if row["version"] > since:
        send({"type": "RECORD", "stream": "people", "record": row})
        top = max(top, row["version"])
    if config.get("fail"):
        print("tap: the API answered 503", file=sys.stderr, flush=True)
        sys.exit(2)
send({"type": "STATE", "value": {"bookmarks": {"people": {"version": top}}}})
