"""The sidecar's own datagram transport for its host-candidate UDP sockets.

asyncio's datagram transport reads one datagram per event-loop round (one epoll call, one
Handle, one `_run_once` per packet) with `recvfrom(256 KiB)`, and knows nothing of the
kernel's arrival stamps. `UdpTransport` is what aioice's StunProtocol needs of a transport
(sendto, get_extra_info, close, is_closing, abort) on a socket registered with the loop's
public `add_reader`, so it works on any event loop (asyncio's, uvloop), and:

- reads up to `READ_BATCH` datagrams per readiness event: a socket that filled while the
  process waited for the CPU is emptied in one go;
- reads with `recvmsg_into` into one reused buffer (`srtp.PacketBuffer`): `recvmsg` would
  allocate 64 KiB for every datagram and shrink it;
- with `stamp_arrivals()`, asks for the kernel's `SO_TIMESTAMPNS` stamp of each datagram's
  arrival (a busy loop reaches the socket milliseconds late, which the
  phone's bandwidth estimator would read as congestion: transport-cc);
- hands SRTP/SRTCP datagrams (RFC 7983: first byte 128-191, never STUN) with their
  arrival time to `media` when set, skipping aioice's STUN parser, which fails on each
  of them with an exception: as the buffer and the datagram's size, for the leg to
  unprotect in place (it must copy out what it keeps: the next datagram overwrites it);
  STUN and DTLS still go to the protocol, as bytes;
- sends with `sock.sendto` at once, from bytes or any buffer (the leg's SRTP send buffer:
  `sends_at_once` says nothing is kept after the call); a datagram the kernel cannot take
  now is dropped and counted (real-time media is better lost than late; STUN and DTLS
  retransmit).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from lens.media import native
from lens.media.srtp import PacketBuffer

_UNPROTECT, _UNPROTECT_RTCP = native.UNPROTECT, native.UNPROTECT_RTCP
SO_TIMESTAMPNS = 35  # Linux (asm-generic): the kernel stamps each datagram's arrival
READ_BATCH = 16  # datagrams read per readiness event at most
# a UDP payload is at most 65507 bytes (IPv4): the receive buffer never truncates one
# (asyncio's 256 KiB buffer is allocated, and shrunk, for every datagram)
MAX_DATAGRAM = 65536
_TIMESPEC = struct.Struct("qq")
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)

# (the reused receive buffer, the datagram's size, its kernel arrival time or None)
MediaSink = Callable[[PacketBuffer, int, float | None], None]
NATIVE = native.load()  # the native receive step, or None (lens.media.native)


class UdpTransport(asyncio.DatagramTransport):
    """A non-blocking UDP socket read and written for `protocol` (see the module's text)."""

    sends_at_once = True  # sendto keeps nothing of `data`: a reused buffer may be passed

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: Any) -> None:
        super().__init__(extra={"socket": sock, "sockname": sock.getsockname()})
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        # the descriptor the native send step (lens.media.native) sends on; -1 once closing
        self.native_fd = self._fd
        self._protocol = protocol
        self._closing = False
        self._ancillary_space = 0  # bytes of ancillary data asked of recvmsg: 0, no stamps
        # SRTP/SRTCP datagrams with their kernel arrival time (None: not stamped), or None:
        # every datagram goes to the protocol
        self.media: MediaSink | None = None
        # with the native receive step: the leg's InlineMediaQueue, which says which libsrtp
        # context decrypts now (native_context) and takes the plaintext (put_plain)
        self.native_sink: Any = None
        self.datagrams_received = 0
        self.send_dropped = 0
        self._buffer = PacketBuffer(MAX_DATAGRAM)
        self._into = [self._buffer.data]
        sock.setblocking(False)
        protocol.connection_made(self)
        loop.add_reader(self._fd, self._read_ready)

    def stamp_arrivals(self) -> bool:
        """Have the kernel stamp each datagram's arrival; False where it cannot."""
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            return False
        self._ancillary_space = _STAMP_SPACE
        return True

    def _read_ready(self) -> None:
        if self.native_sink is not None and NATIVE is not None:
            self._read_native()
            return
        sock, protocol, space = self._sock, self._protocol, self._ancillary_space
        buffer, into = self._buffer, self._into
        data, view = buffer.data, buffer.view
        # the stamps are CLOCK_REALTIME; the sidecar's times are time.monotonic()
        realtime_ahead = time.time() - time.monotonic() if space else 0.0
        for _ in range(READ_BATCH):
            try:
                size, ancillary, _, addr = sock.recvmsg_into(into, space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable for an earlier sendto
                protocol.error_received(exc)
                return
            self.datagrams_received += 1
            arrival = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    arrival = seconds + nanoseconds / 1e9 - realtime_ahead
            media = self.media
            if media is not None and size and 127 < data[0] < 192:
                media(buffer, size, arrival)
            else:
                protocol.datagram_received(bytes(view[:size]), addr)
            if self._closing:  # the protocol closed us while handling the datagram
                return

    def _read_native(self) -> None:
        """_read_ready's loop with the native receive step: each datagram read, stamped and
        (SRTP/SRTCP while the leg decrypts inline) unprotected in one call."""
        protocol, sink, fd = self._protocol, self.native_sink, self._fd
        buffer = self._buffer
        data, view = buffer.data, buffer.view
        stamped = self._ancillary_space != 0
        realtime_ahead = time.time() - time.monotonic() if stamped else 0.0
        receive, context = NATIVE.receive, sink.native_context  # type: ignore[union-attr]
        for _ in range(READ_BATCH):
            try:
                result = receive(fd, data, stamped, _UNPROTECT, _UNPROTECT_RTCP, context())
            except OSError as exc:  # as _read_ready
                protocol.error_received(exc)
                return
            if result is None:
                return
            self.datagrams_received += 1
            status, value, arrival, extra = result
            if arrival is not None:
                arrival -= realtime_ahead
            if status:  # decrypted (or refused by libsrtp) in place
                sink.put_plain(status, value, arrival, extra)
            elif value and 127 < data[0] < 192 and self.media is not None:
                self.media(buffer, value, arrival)  # (not inline now: queued as bytes)
            else:
                protocol.datagram_received(bytes(view[:value]), extra)
            if self._closing:
                return

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        try:
            if addr is None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1
        except OSError as exc:
            self._protocol.error_received(exc)

    def close(self) -> None:
        """Stop reading now; the protocol hears connection_lost soon after (as asyncio's)."""
        if self._closing:
            return
        self._closing = True
        self.native_fd = -1
        self._loop.remove_reader(self._fd)
        self._loop.call_soon(self._connection_lost)

    def _connection_lost(self) -> None:
        try:
            self._protocol.connection_lost(None)
        finally:
            self._sock.close()

    def abort(self) -> None:
        self.close()  # nothing is buffered

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False
