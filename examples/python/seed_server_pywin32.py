"""The classic recipe's pywin32 server: a message-mode pipe \\\\.\\pipe\\<name> (65535-byte
buffers, 500 ms default timeout, unlimited instances), one client after another, every message
printed and answered with "OK".

    python examples\\python\\seed_server_pywin32.py test_pipe
    pipekit send test_pipe --messages hello

An optional second argument is how many clients to serve before exiting.
"""
import sys

import pywintypes
import win32file
import win32pipe


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "test_pipe"
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else None
    served = 0
    while clients is None or served < clients:
        pipe = win32pipe.CreateNamedPipe(
            r"\\.\pipe\%s" % name,
            win32pipe.PIPE_ACCESS_DUPLEX,
            win32pipe.PIPE_TYPE_MESSAGE | win32pipe.PIPE_READMODE_MESSAGE | win32pipe.PIPE_WAIT,
            win32pipe.PIPE_UNLIMITED_INSTANCES,
            65535,
            65535,
            500,
            None,
        )
        print("waiting for a client", flush=True)
        win32pipe.ConnectNamedPipe(pipe, None)
        while True:
            try:
                _, data = win32file.ReadFile(pipe, 65535)
            except pywintypes.error as e:
                if e.winerror == 109:  # ERROR_BROKEN_PIPE: the client has gone
                    break
                raise
            print("received:", data.decode(), flush=True)
            win32file.WriteFile(pipe, b"OK")
        win32pipe.DisconnectNamedPipe(pipe)
        win32file.CloseHandle(pipe)
        served += 1
        print("client gone", flush=True)


if __name__ == "__main__":
    main()
