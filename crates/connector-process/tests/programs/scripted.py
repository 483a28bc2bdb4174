"""A connector scripted by its settings, for idsync's protocol tests: `objects` are what a full
import reads, `changes` what a delta import reads, `watermark` ends both; an export answers
`applied` (anchor "A-" + id), `refused` for an id starting with "bad", `exists` for "dup"."""
import json, os, sys

def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()

hello = json.loads(sys.stdin.readline())
settings, secrets = hello["settings"], hello["secrets"]
print("scripted connector started for", hello["connector"], file=sys.stderr, flush=True)
send({"type": "ready", "protocol": 1,
      "capabilities": {"full_import": True, "delta_import": True, "export": True},
      "object_types": ["person"],
      "attribute_types": {"photo": "binary", "since": "timestamp", "manager": "reference"}})
for line in sys.stdin:
    req = json.loads(line)
    if req["type"] == "full_import":
        for o in settings.get("objects", []):
            send(dict(o, type="object"))
        # What the program was given, so the test sees how the secret travelled.
        token = secrets.get("api_token", "")
        send({"type": "object", "anchor": "probe", "object_type": "person", "attributes": {
            "secret_in_hello": token == "s3cret",
            "secret_in_argv": any(token and token in a for a in sys.argv),
            "secret_in_environment": any(token and token in v for v in os.environ.values()),
            "extra": os.environ.get("EXTRA", ""),
            "cwd": os.getcwd()}})
        send({"type": "end", "watermark": settings.get("watermark", "w1")})
    elif req["type"] == "delta_import":
        print("delta from", req["watermark"], file=sys.stderr, flush=True)
        for c in settings.get("changes", []):
            send(dict(c, type="change"))
        send({"type": "end", "watermark": "after-" + str(req["watermark"])})
    elif req["type"] == "export":
        for item in reversed(req["batch"]):  # answers may come in any order
            if item["id"].startswith("bad"):
                send({"type": "result", "ref": item["ref"], "status": "refused",
                      "message": "HR refuses " + item["id"]})
            elif item["id"].startswith("dup"):
                send({"type": "result", "ref": item["ref"], "status": "exists", "anchor": "A-" + item["id"]})
            else:
                print("export", json.dumps(item, sort_keys=True), file=sys.stderr, flush=True)
                send({"type": "result", "ref": item["ref"], "status": "applied",
                      "anchor": "A-" + item["id"] if item["op"] == "add" else None})
