"""A connector whose full imports disagree (a new anchor each time) and whose full import ends
without a watermark though it offers delta import: what `idsync connector check` must catch."""
import json, sys

def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()

json.loads(sys.stdin.readline())
send({"type": "ready", "protocol": 1,
      "capabilities": {"full_import": True, "delta_import": True, "export": False}})
n = 0
for line in sys.stdin:
    req = json.loads(line)
    if req["type"] == "full_import":
        n += 1
        send({"type": "object", "anchor": "p%d" % n, "object_type": "person",
              "attributes": {"cn": "Person"}})
        send({"type": "end"})
    elif req["type"] == "delta_import":
        send({"type": "change", "op": "delete", "anchor": "nobody"})
        send({"type": "end", "watermark": "w"})
