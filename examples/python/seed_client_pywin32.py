"""The same client for Windows, with pywin32 (pip install pywin32).

    pipekit listen test_pipe --messages --reply OK
    python examples\\python\\seed_client_pywin32.py test_pipe

pipekit's Windows message mode is a PIPE_TYPE_MESSAGE named pipe at \\\\.\\pipe\\<name>; the
client switches its handle to PIPE_READMODE_MESSAGE so each ReadFile returns one message.
Sends "1" .. "10" and prints each reply.
"""
import sys

import pywintypes  # noqa: F401  (part of pywin32; imported for its error type)
import win32file
import win32pipe


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "test_pipe"
    handle = win32file.CreateFile(
        r"\\.\pipe\%s" % name,
        win32file.GENERIC_READ | win32file.GENERIC_WRITE,
        0,
        None,
        win32file.OPEN_EXISTING,
        0,
        None,
    )
    win32pipe.SetNamedPipeHandleState(handle, win32pipe.PIPE_READMODE_MESSAGE, None, None)
    for i in range(1, 11):
        win32file.WriteFile(handle, str(i).encode())
        _, reply = win32file.ReadFile(handle, 65535)
        print(reply.decode(), flush=True)
    win32file.CloseHandle(handle)


if __name__ == "__main__":
    main()
