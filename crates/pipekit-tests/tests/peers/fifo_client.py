"""A pipekit FIFO-transport client written only from the protocol in pipekit_unix::fifo.

    python3 fifo_client.py SERVER_DIR [--die-mid-handshake|--stall-mid-handshake]

Reads lines from stdin, sends each as one message (message mode), prints each reply as a line.
With --die-mid-handshake it announces itself and exits before answering the server. With
--stall-mid-handshake it announces itself, prints "announced", and then never answers: it
waits for stdin to close, holding its FIFOs open.
"""
import os
import secrets
import select
import string
import struct
import sys

ALPHABET = string.ascii_letters + string.digits


def read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main():
    server_dir = sys.argv[1]
    die = "--die-mid-handshake" in sys.argv
    stall = "--stall-mid-handshake" in sys.argv
    token = "".join(secrets.choice(ALPHABET) for _ in range(32))
    c2s = os.path.join(server_dir, token + ".c2s")
    s2c = os.path.join(server_dir, token + ".s2c")
    os.mkfifo(c2s, 0o600)
    os.mkfifo(s2c, 0o600)
    s2c_fd = os.open(s2c, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    req = os.open(os.path.join(server_dir, "requests"), os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    record = ("PKF1 M " + token + "\n").encode()
    assert len(record) == 40
    os.write(req, record)
    os.close(req)
    if die:
        os._exit(0)
    if stall:
        print("announced", flush=True)
        sys.stdin.read()
        return
    ready, _, _ = select.select([s2c_fd], [], [], 5.0)
    if not ready:
        sys.exit("no answer from the server")
    answer = os.read(s2c_fd, 1)
    if answer != b"K":
        sys.exit("refused: %r" % answer)
    c2s_fd = os.open(c2s, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    os.write(c2s_fd, b"K")
    # Both ends are open: the pair can go. The server unlinks it too; whoever is second
    # finds it gone.
    for path in (c2s, s2c):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    os.set_blocking(s2c_fd, True)
    os.set_blocking(c2s_fd, True)
    for line in sys.stdin:
        msg = line.rstrip("\n").encode()
        os.write(c2s_fd, struct.pack(">I", len(msg)) + msg)
        header = read_exact(s2c_fd, 4)
        if header is None:
            sys.exit("server closed")
        (size,) = struct.unpack(">I", header)
        reply = read_exact(s2c_fd, size) if size else b""
        print(reply.decode(), flush=True)
    os.close(c2s_fd)
    # After our write side closes, the server's echo loop ends and it closes its side.
    assert os.read(s2c_fd, 1) == b""


if __name__ == "__main__":
    main()
