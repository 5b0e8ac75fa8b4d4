"""Cutting a byte stream into frames: by terminator, optionally resynchronised on a start byte.

Serial instruments send frames back to back; a read returns whatever arrived, which may be half a frame or
three. :class:`Framer` buffers the bytes and hands out whole frames (terminator included). Line noise and a
wrong baud rate produce long runs without a terminator: anything longer than ``max_len`` is handed out as
one frame on its own (the parser rejects it and the technician sees it in the health report) instead of
growing the buffer for ever.

With a ``start`` byte (binary protocols such as the XK3190 ``STX … ETX`` frame), bytes in front of the
start byte are handed out as a separate frame, so that garbage is counted rather than glued to a good
frame. Line ends and NULs there are dropped: some firmware ends every binary frame with CR LF.

>>> f = Framer(b"\\r\\n")
>>> f.feed(b"S S   1.0 g\\r\\nS S ")
[b'S S   1.0 g\\r\\n']
>>> f.feed(b"  2.0 g\\r\\n")
[b'S S   2.0 g\\r\\n']
>>> Framer(b"\\x03", start=b"\\x02").feed(b"xx\\x02+0012342A5\\x03")
[b'xx', b'\\x02+0012342A5\\x03']
>>> Framer(b"\\r", max_len=4).feed(b"abcdefghij\\rok\\r")
[b'abcd', b'efgh', b'ij', b'ok\\r']

A frame is good only if it ends with the terminator; everything else the framer hands out is junk.
"""

from __future__ import annotations


class Framer:
    """Stateful splitter: ``feed(chunk)`` returns the complete frames the chunk finished."""

    __slots__ = ("terminator", "start", "max_len", "_buf", "_overrun")

    def __init__(self, terminator: bytes, *, start: bytes | None = None, max_len: int = 256) -> None:
        if not terminator:
            raise ValueError("a frame terminator must be at least one byte")
        if max_len < 1:
            raise ValueError("max_len must be positive")
        self.terminator = terminator
        self.start = start
        self.max_len = max_len
        self._buf = bytearray()
        self._overrun = False

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        term, tlen, start, max_len = self.terminator, len(self.terminator), self.start, self.max_len
        pos = 0
        while True:
            if start is not None:
                s = buf.find(start, pos)
                if s > pos:
                    # junk in front of a start byte: a frame of its own (rejected by the parser) — except line
                    # ends and NULs, which some firmware puts after each binary frame
                    if buf[pos:s].strip(b"\r\n\x00"):
                        out.append(bytes(buf[pos:s]))
                    pos = s
            end = buf.find(term, pos)
            if end < 0 or end + tlen - pos > max_len:
                if len(buf) - pos >= max_len and (end < 0 or end + tlen - pos > max_len):
                    out.append(bytes(buf[pos : pos + max_len]))
                    pos += max_len
                    self._overrun = True
                    continue
                break
            if self._overrun:
                # the rest of an over-long run: junk too, handed out without its terminator so that it is
                # never mistaken for a frame (digits at the end of noise must not become a number)
                self._overrun = False
                if end > pos:
                    out.append(bytes(buf[pos:end]))
            else:
                out.append(bytes(buf[pos : end + tlen]))
            pos = end + tlen
        if pos:
            del buf[:pos]
        return out

    def pending(self) -> bytes:
        """Bytes received that do not form a whole frame yet (shown when a port goes quiet)."""
        return bytes(self._buf)

    def clear(self) -> None:
        self._buf.clear()
        self._overrun = False


def unescape(text: str) -> bytes:
    r"""Bytes from a frame typed on a command line or in a configuration file.

    Understands ``\r``, ``\n``, ``\t``, ``\\``, ``\xHH`` and ``\e`` (escape, for Sartorius commands).

    >>> unescape(r"S S     100.00 g\r\n")
    b'S S     100.00 g\r\n'
    >>> unescape(r"\eP\x02")
    b'\x1bP\x02'
    >>> unescape(r"bad\q")
    Traceback (most recent call last):
    ...
    ValueError: unknown escape \q at position 3; use \r \n \t \\ \e or \xHH
    """
    out = bytearray()
    i, n = 0, len(text)
    simple = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\", "e": b"\x1b", "0": b"\x00"}
    while i < n:
        ch = text[i]
        if ch != "\\":
            out += ch.encode("latin-1", errors="strict") if ord(ch) < 256 else ch.encode()
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in simple:
            out += simple[nxt]
            i += 2
        elif nxt == "x" and i + 4 <= n:
            try:
                out.append(int(text[i + 2 : i + 4], 16))
            except ValueError:
                raise ValueError(f"bad hex escape {text[i:i + 4]!r} at position {i} in {text!r}") from None
            i += 4
        else:
            raise ValueError(
                f"unknown escape {text[i:i + 2]} at position {i}; use \\r \\n \\t \\\\ \\e or \\xHH"
            )
    return bytes(out)


# A decimal number as instruments print it: digits with an optional point, no exponent, no "nan"/"inf"
# (float() would accept those, and they must never pass as a measurement). Bytes patterns only match
# ASCII digits, so no other script's digits sneak through either.
NUMBER = rb"(?:\d+(?:\.\d*)?|\.\d+)"


def strip_frame(frame: bytes) -> bytes:
    r"""The frame without its line ending (CR, LF in any combination, a stray NUL from a resetting adapter).

    >>> strip_frame(b"\n01A+0000.123\r")
    b'01A+0000.123'
    """
    return frame.strip(b"\r\n\x00")
