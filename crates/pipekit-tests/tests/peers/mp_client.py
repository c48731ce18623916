"""A Python multiprocessing.connection Client: 1000 payloads in order, then a 1 MiB one,
each checked against its echo.

    python3 mp_client.py ADDRESS [AUTHKEY|-]

Prints "ok" on success; a failed handshake raises (AuthenticationError) and exits non-zero.
"""
import sys
from multiprocessing.connection import Client

address = sys.argv[1]
key = sys.argv[2].encode() if len(sys.argv) > 2 and sys.argv[2] != "-" else None
conn = Client(address, authkey=key)
for i in range(1000):
    msg = b"message %d" % i
    conn.send_bytes(msg)
    assert conn.recv_bytes() == msg, i
big = bytes(range(256)) * 4096
conn.send_bytes(big)
assert conn.recv_bytes() == big
conn.close()
print("ok", flush=True)
