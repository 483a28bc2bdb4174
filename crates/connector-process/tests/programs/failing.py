"""One of the ways a connector program misbehaves, chosen by its first argument, for idsync's
robustness tests. It writes its process id (and that of a child it starts, for `hang`) to the
file named by PIDFILE, so a test can see that nothing is left running."""
import json, os, subprocess, sys, time

mode = sys.argv[1]
pids = [os.getpid()]

def send(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

def obj(i):
    return json.dumps({"type": "object", "anchor": "p%d" % i, "object_type": "person",
                       "attributes": {"cn": "Person %d" % i}})

if mode == "hang":
    pids.append(subprocess.Popen(["sleep", "3600"]).pid)
with open(os.environ["PIDFILE"], "a") as f:  # a probe session may have run before
    f.write(" ".join(map(str, pids)) + "\n")
hello = json.loads(sys.stdin.readline())
if mode == "not-protocol":
    send('{"not":"protocol"}')
    time.sleep(3600)
send(json.dumps({"type": "ready", "protocol": 1,
                 "capabilities": {"full_import": True, "delta_import": False, "export": True}}))
req = json.loads(sys.stdin.readline())
print("got", req["type"], file=sys.stderr, flush=True)
if mode == "exit-half":
    for i in range(5):
        send(obj(i))
    print("HR service: connection reset while reading page 2", file=sys.stderr, flush=True)
    sys.exit(3)
elif mode == "hang":
    send(obj(0))
    print("waiting for the HR service to answer", file=sys.stderr, flush=True)
    time.sleep(3600)
elif mode == "bad-json-line-3":
    send(obj(0))                        # line 2
    send('{"type": "object", "anchor": ')  # line 3
    time.sleep(3600)
elif mode == "wrong-export":
    send(json.dumps({"type": "result", "ref": "someone-else", "status": "applied"}))
    time.sleep(3600)
elif mode == "stderr-flood":
    line = "x" * 1023 + "\n"
    for _ in range(100 * 1024):        # 100 MB
        sys.stderr.write(line)
    sys.stderr.flush()
    send(json.dumps({"type": "end", "watermark": "w"}))
    time.sleep(3600)
