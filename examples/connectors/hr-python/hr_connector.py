#!/usr/bin/env python3
"""An idsync connector for the example HR service (hr_service.py), in Python with only the
standard library. It speaks idsync's connector protocol (docs/connector-protocol.md): JSON
lines on standard input and output, logs on standard error.

- full import: the employees, page by page (one request per page, never one per person);
  the watermark is the service's change number when the read began.
- delta import: the service's change feed from the watermark, page by page: new employees are
  `add`s, changed fields value-level `modify`s, a new account a `rename`, and `delete`s.
- export: employees created (POST), changed (PATCH) and deleted (DELETE); a create whose
  account already exists with the same values is answered `exists` (idsync's re-send after a
  crash), with other values `refused`.

Settings (in idsync's configuration, [connector.settings]): base_url, page_size. The bearer
token is the connector's `api_token` secret, which idsync sends in `hello`.
"""
import json
import sys
import urllib.error
import urllib.request

FIELDS = ["account", "displayName", "givenName", "surname", "mail", "department", "title",
          "manager", "hired", "photo"]
TYPES = {"hired": "timestamp", "photo": "binary"}


def send(message):
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def log(*words):
    print(*words, file=sys.stderr, flush=True)


class Hr:
    def __init__(self, base_url, token, page_size):
        self.base = base_url.rstrip("/")
        self.token = token
        self.page_size = page_size

    def call(self, method, path, body=None):
        """(status, JSON body) of one request; an HTTP error status is returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {"error": e.reason}

    def get(self, path):
        status, body = self.call("GET", path)
        if status != 200:
            raise RuntimeError("GET %s: HTTP %d: %s" % (path, status, body.get("error")))
        return body


def attributes(employee):
    out = {"employeeNumber": [employee["id"]]}
    for f in FIELDS:
        v = employee.get(f)
        if v is not None and v != "":
            out[f] = [v]
    return out


def full_import(hr):
    after, watermark, pages = "", None, 0
    while True:
        page = hr.get("/employees?limit=%d&after=%s" % (hr.page_size, after))
        pages += 1
        if watermark is None:
            watermark = str(page["seq"])  # changes from here on are the next delta's
        for e in page["employees"]:
            send({"type": "object", "anchor": e["id"], "id": e["account"],
                  "object_type": "person", "attributes": attributes(e)})
        if page["next"] is None:
            break
        after = page["next"]
    log("full import: read %d page(s)" % pages)
    send({"type": "end", "watermark": watermark})


def delta_import(hr, watermark):
    since = int(watermark or 0)
    pages = changes = 0
    while True:
        page = hr.get("/changes?limit=%d&since=%d" % (hr.page_size, since))
        pages += 1
        for c in page["changes"]:
            changes += 1
            i, fields = c["id"], c["fields"]
            if c["kind"] == "add":
                send({"type": "change", "op": "add", "anchor": i, "id": fields["account"],
                      "object_type": "person", "attributes": attributes(dict(fields, id=i))})
            elif c["kind"] == "delete":
                send({"type": "change", "op": "delete", "anchor": i})
            else:
                if fields.get("account"):
                    send({"type": "change", "op": "rename", "anchor": i,
                          "new_id": fields["account"]})
                deltas = [{"attribute": f, "replace": [] if v is None or v == "" else [v]}
                          for f, v in sorted(fields.items()) if f in FIELDS]
                if deltas:
                    send({"type": "change", "op": "modify", "anchor": i, "changes": deltas})
        if page["next"] is None:
            break
        since = page["next"]
    log("delta import from %s: %d change(s) in %d page(s)" % (watermark, changes, pages))
    send({"type": "end", "watermark": str(page["seq"])})


def fields_of(attributes):
    out = {}
    for name, values in attributes.items():
        if name == "employeeNumber":
            continue
        if name not in FIELDS:
            raise ValueError("the HR service has no field `%s`" % name)
        out[name] = values[0] if values else None
    return out


def export_one(hr, item):
    op, ref = item["op"], item["ref"]
    try:
        if op == "add":
            fields = fields_of(item.get("attributes", {}))
            fields.setdefault("account", item["id"])
            status, body = hr.call("POST", "/employees", fields)
            if status == 201:
                return {"status": "applied", "anchor": body["id"]}
            if status == 409:
                existing = body.get("employee", {})
                if all(existing.get(k) == v for k, v in fields.items() if v is not None):
                    return {"status": "exists", "anchor": existing["id"]}
            return {"status": "refused", "message": "HTTP %d: %s" % (status, body.get("error"))}
        anchor = item.get("anchor")
        if not anchor:
            return {"status": "refused", "message": "no employee id (anchor) to change"}
        if op == "delete":
            status, body = hr.call("DELETE", "/employees/" + anchor)
            if status in (200, 404):  # gone either way
                return {"status": "applied"}
            return {"status": "refused", "message": "HTTP %d: %s" % (status, body.get("error"))}
        fields = {}
        for d in item.get("changes", []):
            name = d["attribute"]
            if name not in FIELDS:
                raise ValueError("the HR service has no field `%s`" % name)
            values = d.get("replace")
            if values is None:  # value-level: HR fields hold one value
                values = d.get("add") or []
            fields[name] = values[0] if values else None
        if item.get("new_id"):
            fields["account"] = item["new_id"]
        status, body = hr.call("PATCH", "/employees/" + anchor, fields)
        if status == 200:
            return {"status": "applied"}
        return {"status": "refused", "message": "HTTP %d: %s" % (status, body.get("error"))}
    except (ValueError, KeyError) as e:
        return {"status": "refused", "message": str(e)}


def main():
    hello = json.loads(sys.stdin.readline())
    settings = hello.get("settings", {})
    hr = Hr(settings.get("base_url", "http://127.0.0.1:8081"),
            hello.get("secrets", {}).get("api_token", ""),
            int(settings.get("page_size", 200)))
    send({"type": "ready", "protocol": 1,
          "capabilities": {"full_import": True, "delta_import": True, "export": True,
                           "delta_sees_own_exports": True},
          "identifier": "plain", "object_types": ["person"], "attribute_types": TYPES})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["type"] == "full_import":
                full_import(hr)
            elif request["type"] == "delta_import":
                delta_import(hr, request.get("watermark"))
            elif request["type"] == "export":
                for item in request["batch"]:
                    send(dict(export_one(hr, item), type="result", ref=item["ref"]))
        except (OSError, RuntimeError) as e:
            send({"type": "error", "message": "HR service at %s: %s" % (hr.base, e)})
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
