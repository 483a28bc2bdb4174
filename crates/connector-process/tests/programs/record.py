"""Runs a connector program and writes every line of the conversation to a file: `> ` for what
idsync sent, `< ` for what the program answered. Usage: record.py FILE PROGRAM [ARGS...]"""
import subprocess, sys, threading

out = open(sys.argv[1], "w", buffering=1)
lock = threading.Lock()
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

def forward_input():
    for line in sys.stdin:
        with lock:
            out.write("> " + line)
        child.stdin.write(line)
        child.stdin.flush()
    child.stdin.close()

threading.Thread(target=forward_input, daemon=True).start()
for line in child.stdout:
    with lock:
        out.write("< " + line)
    sys.stdout.write(line)
    sys.stdout.flush()
sys.exit(child.wait())
