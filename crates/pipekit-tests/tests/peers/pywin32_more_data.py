"""pywin32 reading big messages through a small buffer: ReadFile returns ERROR_MORE_DATA
until the last piece of each message.

    python pywin32_more_data.py NAME SIZE...

Opens \\\\.\\pipe\\NAME in message read mode; for each SIZE sends one message of SIZE pattern
bytes, reads the echo 4096 bytes at a time, checks it, and prints "ok SIZE PIECES".
"""
import sys

import win32file
import win32pipe
import winerror


def pattern(size):
    return bytes((i * 31 + size) & 0xFF for i in range(size))


def main():
    name, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
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
    for size in sizes:
        data = pattern(size)
        win32file.WriteFile(handle, data)
        pieces, got = 0, b""
        while True:
            hr, piece = win32file.ReadFile(handle, 4096)
            pieces += 1
            got += piece
            if hr == 0:
                break
            assert hr == winerror.ERROR_MORE_DATA, hr
        assert got == data, (size, len(got))
        print("ok", size, pieces, flush=True)
    win32file.CloseHandle(handle)


if __name__ == "__main__":
    main()
