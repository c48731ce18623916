"""A Python client for a pipekit message-mode server on Linux, with only the standard library.

    pipekit listen test_pipe --messages --reply OK &
    python3 examples/python/seed_client.py "$(pipekit path test_pipe)"

On Linux a pipekit message-mode pipe is a SOCK_SEQPACKET Unix-domain socket: each send() is
one message and each recv() returns one whole message. (On macOS and the BSDs pipekit frames
messages on a SOCK_STREAM socket instead: a 4-byte big-endian length, then the message.)
Sends "1" .. "10" and prints each reply.
"""
import socket
import sys


def main():
    path = sys.argv[1]
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.connect(path)
        for i in range(1, 11):
            sock.send(str(i).encode())
            reply = sock.recv(65535)
            print(reply.decode(), flush=True)


if __name__ == "__main__":
    main()
