#!/usr/bin/env python3
"""A small HR service for the example connector: employees over JSON/HTTP with pagination and a
change feed, kept in a JSON file. Standard library only. It stands in for an internal HR system;
run it with

    python3 hr_service.py --port 8081 --data hr.json --token-file hr.token

API (every request needs `Authorization: Bearer <token>`):
  GET    /employees?limit=N&after=ID   a page of employees by id; `next` is the cursor or null;
                                       `seq` is the change number the service is at
  GET    /changes?since=SEQ&limit=N    changes after SEQ: {"seq", "kind": "add"|"update"|
                                       "delete", "id", "fields"}; `next` is the cursor or null
  POST   /employees                    create (201); 409 with the existing one if the account
                                       is taken
  PATCH  /employees/ID                 change fields (null removes one)
  DELETE /employees/ID
  GET    /stats                        how many requests of each kind it served (for tests)
"""
import argparse, json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

FIELDS = ["account", "displayName", "givenName", "surname", "mail", "department", "title",
          "manager", "hired", "photo"]


class Store:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        try:
            with open(path) as f:
                d = json.load(f)
        except FileNotFoundError:
            d = {}
        self.employees = d.get("employees", {})
        self.changes = d.get("changes", [])
        self.next_id = d.get("next_id", 1000 + len(self.employees) + 1)

    def seq(self):
        return self.changes[-1]["seq"] if self.changes else 0

    def record(self, kind, emp_id, fields):
        self.changes.append({"seq": self.seq() + 1, "kind": kind, "id": emp_id, "fields": fields})

    def save(self):
        with open(self.path + ".tmp", "w") as f:
            json.dump({"employees": self.employees, "changes": self.changes,
                       "next_id": self.next_id}, f, indent=1, sort_keys=True)
        import os
        os.replace(self.path + ".tmp", self.path)


def make_handler(store, token, stats):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self):
            if self.headers.get("Authorization") != "Bearer " + token:
                self.reply(401, {"error": "a valid bearer token is needed"})
                return False
            return True

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def count(self, what):
            with store.lock:
                stats[what] = stats.get(what, 0) + 1

        def do_GET(self):
            if not self.authorized():
                return
            u = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            limit = max(1, min(int(q.get("limit", 100)), 1000))
            if u.path == "/employees":
                self.count("GET /employees")
                with store.lock:
                    ids = sorted(i for i in store.employees if i > q.get("after", ""))
                    page = [dict(store.employees[i], id=i) for i in ids[:limit]]
                    nxt = page[-1]["id"] if len(ids) > limit else None
                    self.reply(200, {"employees": page, "next": nxt, "seq": store.seq()})
            elif u.path == "/changes":
                self.count("GET /changes")
                since = int(q.get("since", 0))
                with store.lock:
                    later = [c for c in store.changes if c["seq"] > since]
                    page = later[:limit]
                    nxt = page[-1]["seq"] if len(later) > limit else None
                    self.reply(200, {"changes": page, "next": nxt, "seq": store.seq()})
            elif u.path == "/stats":
                with store.lock:
                    self.reply(200, dict(stats))
            elif u.path.startswith("/employees/"):
                self.count("GET /employees/ID")
                i = u.path.rsplit("/", 1)[1]
                with store.lock:
                    e = store.employees.get(i)
                    self.reply(200, dict(e, id=i)) if e else self.reply(404, {"error": "no " + i})
            else:
                self.reply(404, {"error": "no such resource"})

        def do_POST(self):
            if not self.authorized():
                return
            if self.path != "/employees":
                return self.reply(404, {"error": "no such resource"})
            self.count("POST /employees")
            e = {k: v for k, v in self.body().items() if k in FIELDS and v is not None}
            if not e.get("account"):
                return self.reply(400, {"error": "an employee has an account"})
            with store.lock:
                for i, other in store.employees.items():
                    if other.get("account") == e["account"]:
                        return self.reply(409, {"error": "account %s is taken" % e["account"],
                                                "employee": dict(other, id=i)})
                i = "E%d" % store.next_id
                store.next_id += 1
                store.employees[i] = e
                store.record("add", i, e)
                store.save()
                self.reply(201, dict(e, id=i))

        def do_PATCH(self):
            if not self.authorized():
                return
            self.count("PATCH /employees/ID")
            i = self.path.rsplit("/", 1)[1]
            fields = {k: v for k, v in self.body().items() if k in FIELDS}
            with store.lock:
                e = store.employees.get(i)
                if e is None:
                    return self.reply(404, {"error": "no employee " + i})
                if fields.get("account") and any(
                        o.get("account") == fields["account"] and j != i
                        for j, o in store.employees.items()):
                    return self.reply(409, {"error": "account %s is taken" % fields["account"]})
                for k, v in fields.items():
                    if v is None:
                        e.pop(k, None)
                    else:
                        e[k] = v
                store.record("update", i, fields)
                store.save()
                self.reply(200, dict(e, id=i))

        def do_DELETE(self):
            if not self.authorized():
                return
            self.count("DELETE /employees/ID")
            i = self.path.rsplit("/", 1)[1]
            with store.lock:
                if store.employees.pop(i, None) is None:
                    return self.reply(404, {"error": "no employee " + i})
                store.record("delete", i, {})
                store.save()
                self.reply(200, {})

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--token-file", required=True)
    a = p.parse_args()
    with open(a.token_file) as f:
        token = f.read().strip()
    store = Store(a.data)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(store, token, {}))
    server.serve_forever()


if __name__ == "__main__":
    main()
