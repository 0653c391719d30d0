"""Byte sources for the reader: a file, stdin or a pipe, gzip-compressed or not.

Reads return whatever is available now (one system call on a pipe) instead of waiting for a
full chunk, so a live pcapng stream from dumpcap is decoded as soon as it arrives; on a
regular file the same call fills the whole chunk. Compression is detected from the magic
bytes, never from the file name, and undone incrementally with bounded output per call.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import mmap
import os
import select
import stat
import sys
import zlib
from typing import BinaryIO

from flowdet.errors import CaptureError

GZIP_MAGIC = b"\x1f\x8b"
_RAW_CHUNK = 1 << 20
_PIPE_BYTES = 1 << 20


class _RawReader:
    """One underlying binary stream, read with at most one system call per read."""

    def __init__(self, f: BinaryIO, name: str) -> None:
        self._f = f
        self.name = name
        self._readinto1 = getattr(f, "readinto1", None) or getattr(f, "readinto", None)
        self._fd: int | None = None
        try:
            fd = f.fileno()
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode):
                self._fd = fd  # a stream: worth asking whether more bytes are ready
            if stat.S_ISFIFO(mode) and hasattr(fcntl, "F_SETPIPE_SZ"):
                # A larger pipe lets one read take more packets at high rates (fewer, larger
                # batches); latency is unchanged since reads never wait for a full pipe.
                with contextlib.suppress(OSError):
                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            pass

    def readinto(self, mv: memoryview) -> int:
        """At least one byte, blocking until some arrive; 0 only at the end of the stream."""
        try:
            while True:
                if self._readinto1 is not None:
                    got = self._readinto1(mv)
                else:
                    data = self._f.read(len(mv))
                    got = None if data is None else len(data)
                    if got:
                        mv[:got] = data
                if got is not None:
                    return got
                self._wait_readable()  # a non-blocking stream with nothing to read yet
        except OSError as exc:
            raise CaptureError(f"{self.name}: read failed: {exc.strerror or exc}") from None

    def _wait_readable(self) -> None:
        try:
            select.select([self._f.fileno()], [], [])
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            raise CaptureError(
                f"{self.name}: non-blocking stream without a file descriptor"
            ) from None

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        got = self.readinto(memoryview(buf))
        del buf[got:]
        return bytes(buf)

    @property
    def is_stream(self) -> bool:
        return self._fd is not None

    def more_ready(self) -> bool:
        """True when a stream has bytes waiting, so a read now would not block."""
        if self._fd is None:
            return False
        try:
            return bool(select.select([self._fd], [], [], 0)[0])
        except (OSError, ValueError):
            return False


class ByteSource:
    """The decompressed bytes of a capture source, with a peek at its first bytes."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO) -> None:
        self._owned: BinaryIO | None = None
        if isinstance(source, (str, os.PathLike)):
            if str(source) == "-":
                self.name = "<stdin>"
                f: BinaryIO = io.FileIO(sys.stdin.fileno(), "rb", closefd=False)
            else:
                self.name = str(source)
                if os.path.isdir(source):  # os.path: an unreadable parent is not a directory
                    raise CaptureError(f"{self.name}: is a directory, not a capture file")
                try:
                    f = open(source, "rb", buffering=0)  # noqa: SIM115 - closed in close()
                except OSError as exc:
                    raise CaptureError(f"{self.name}: cannot open: {exc.strerror or exc}") from None
                self._owned = f
        else:
            self.name = str(getattr(source, "name", "<stream>"))
            f = source
        self._raw = _RawReader(f, self.name)
        self.warnings: list[str] = []
        self.compressed = False
        head = self._read_head(4)
        self._pending = head  # bytes read before deciding on compression
        self._gz: zlib._Decompress | None = None
        self._gz_tail = b""
        self._gz_started = False
        self._gz_done = False
        if head.startswith(GZIP_MAGIC):
            self.compressed = True
            self._gz = zlib.decompressobj(wbits=31)
            self._gz_tail = head
            self._pending = b""

    def _read_head(self, n: int) -> bytes:
        head = b""
        while len(head) < n:
            chunk = self._raw.read(n - len(head))
            if not chunk:
                break
            head += chunk
        return head

    def readinto(self, mv: memoryview) -> int:
        """Up to len(mv) bytes of the capture; 0 only at the end of the stream."""
        if self._pending:
            k = min(len(mv), len(self._pending))
            mv[:k] = self._pending[:k]
            self._pending = self._pending[k:]
            return k
        if self._gz is None:
            return self._raw.readinto(mv)
        return self._gunzip_into(mv)

    @property
    def is_stream(self) -> bool:
        """A pipe, socket or terminal: reading ahead could block on data not yet written."""
        return self._raw.is_stream

    def more_ready(self) -> bool:
        return bool(self._pending) or bool(self._gz_tail) or self._raw.more_ready()

    def _gunzip_into(self, mv: memoryview) -> int:
        assert self._gz is not None
        while not self._gz_done:
            if self._gz_tail:
                try:
                    out = self._gz.decompress(self._gz_tail, len(mv))
                except zlib.error as exc:
                    self.warnings.append(f"gzip data is corrupt ({exc}); stopped")
                    self._gz_tail = b""
                    self._gz_done = True
                    return 0
                self._gz_started = True
                self._gz_tail = self._gz.unconsumed_tail
                if self._gz.eof:
                    rest = self._gz.unused_data + self._gz_tail
                    self._gz = zlib.decompressobj(wbits=31)
                    self._gz_started = False
                    self._gz_tail = b""
                    if rest.startswith(GZIP_MAGIC):
                        self._gz_tail = rest  # another gzip member follows
                    elif rest.strip(b"\x00"):
                        self.warnings.append(
                            f"{len(rest)} bytes of trailing garbage after the gzip stream ignored"
                        )
                if out:
                    mv[: len(out)] = out
                    return len(out)
                continue
            raw = self._raw.read(_RAW_CHUNK)
            if not raw:
                if self._gz_started:
                    self.warnings.append("gzip stream is truncated (no end-of-stream marker)")
                return 0
            self._gz_tail = raw
        return 0

    def map_file(self) -> mmap.mmap | None:
        """The whole capture file mapped into memory, when it is an uncompressed regular file
        this source opened itself; else None (streams, gzip, file objects, empty files).

        Mapping saves the two copies of reading (kernel to buffer, buffer to batch): batches
        are views of the mapping. The mapping is private copy-on-write, so the file is never
        written; a file truncated by another process while it is read ends the process
        with SIGBUS, as for any tool that maps its input.
        """
        if self._owned is None or self.compressed:
            return None
        try:
            fd = self._owned.fileno()
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                return None
            mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_COPY)
        except (OSError, ValueError, io.UnsupportedOperation):
            return None
        with contextlib.suppress(OSError, AttributeError, ValueError):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        return mm

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None
