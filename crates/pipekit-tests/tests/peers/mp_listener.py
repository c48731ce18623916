"""A Python multiprocessing.connection Listener that echoes send_bytes.

    python3 mp_listener.py ADDRESS [AUTHKEY|-]

Prints "ready" once listening; for each client prints "rejected <error>" if it fails the
handshake, or echoes every payload and prints "done" when the client leaves, then exits.
"""
import sys
from multiprocessing.connection import Listener

address = sys.argv[1]
key = sys.argv[2].encode() if len(sys.argv) > 2 and sys.argv[2] != "-" else None
with Listener(address, authkey=key) as listener:
    print("ready", flush=True)
    while True:
        try:
            conn = listener.accept()
        except Exception as e:  # AuthenticationError and friends: keep serving
            print("rejected", type(e).__name__, flush=True)
            continue
        try:
            while True:
                conn.send_bytes(conn.recv_bytes())
        except EOFError:
            print("done", flush=True)
            break
