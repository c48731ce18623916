"""An AF_UNIX SOCK_STREAM echo server at PATH (standing in for a .NET NamedPipeServerStream).

    python3 unix_echo_server.py PATH

Prints "ready" once listening, echoes one client until it leaves, removes PATH.
"""
import os
import socket
import sys

path = sys.argv[1]
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
    server.bind(path)
    server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
os.unlink(path)
