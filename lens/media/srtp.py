"""SRTP protect and unprotect on reused buffers: libsrtp called directly, in one place.

aiortc protects and unprotects every packet with ``pylibsrtp.Session``, whose wrapper costs
more than libsrtp's own work (AES-GCM with AES-NI): per packet it checks the type, allocates
an ``int *`` with cffi, copies the packet into its buffer, maps the return code and copies
the result out into new bytes (7.0-7.4 µs for a 1162-byte packet, against 3.4-4.0 µs for
``lib.srtp_protect`` on a reused buffer, over 60,000 packets). The sidecar's per-packet
path needs none of it: a packet it sends is protected in :class:`PacketBuffer` and the
socket sends straight from it; a packet it receives is read into one (``recvmsg_into``) and
unprotected in place, and only the plaintext is copied out, once, as the bytes the
handlers keep.

:class:`FastSrtp` works on the libsrtp context (``srtp_t``) that aiortc's
``pylibsrtp.Session`` created with the DTLS-derived keys, through pylibsrtp's own cffi
``ffi`` and ``lib``, so keys, policies and replay windows stay pylibsrtp's and aiortc's; it
keeps the Session alive (the Session frees the context). It relies on pylibsrtp 1.0's
internals, hence the pin ``pylibsrtp>=1.0,<1.1`` in pyproject.toml:

- ``Session._srtp``, an ``srtp_t *`` whose ``[0]`` is the context;
- libsrtp 2's in-place calls ``srtp_protect(ctx, void *packet, int *len)`` (and ``_rtcp``,
  ``srtp_unprotect``, ``srtp_unprotect_rtcp``), which need the trailer's room past the
  packet (``SRTP_MAX_TRAILER_LEN``, ``SRTP_MAX_SRTCP_TRAILER_LEN``);
- ``lib.srtp_err_status_ok`` and ``pylibsrtp.ERRORS`` for the error text.

Errors are pylibsrtp's: a packet longer than pylibsrtp's 1500-byte buffer allows raises
``ValueError("packet is too long")`` and nothing is written (the length is checked before
the copy, and the buffer keeps the trailer's room); libsrtp's failures (authentication,
replay) raise ``pylibsrtp.Error`` with pylibsrtp's message.
"""

from __future__ import annotations

import pylibsrtp
from pylibsrtp import SRTP_MAX_SRTCP_TRAILER_LEN, SRTP_MAX_TRAILER_LEN, ffi, lib

# pylibsrtp's limit: a packet plus its trailer fits in 1500 bytes (beyond it, ValueError)
PACKET_LIMIT = 1500
_OK = lib.srtp_err_status_ok


class PacketBuffer:
    """A reused buffer libsrtp works on in place: ``data`` (a bytearray) for the socket,
    ``view`` to send or copy out a part of it, a cffi pointer to the same memory for libsrtp.

    Anything kept after the next use must be copied out (``bytes(view[:n])``)."""

    __slots__ = ("data", "view", "pointer", "size")

    def __init__(self, size: int = PACKET_LIMIT) -> None:
        self.data = bytearray(size)
        self.view = memoryview(self.data)
        # (cffi holds a buffer export: the bytearray can no longer be resized or moved)
        self.pointer = ffi.from_buffer("unsigned char[]", self.data, require_writable=True)
        self.size = size


def _raise(rc: int) -> None:
    raise pylibsrtp.Error(pylibsrtp.ERRORS[rc])


class FastSrtp:
    """One ``pylibsrtp.Session``'s libsrtp context, called directly (see the module's text).

    ``protect``/``protect_rtcp`` return a view of this object's send buffer, valid until its
    next call (send it, or copy it); ``unprotect``/``unprotect_rtcp`` work in place on a
    buffer the caller read the packet into and return the plaintext's length."""

    __slots__ = ("session", "address", "_context", "_length", "_send")

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session  # (keeps the libsrtp context alive)
        self._context = session._srtp[0]
        # the context's address, for the native steps (lens.media.native)
        self.address = int(ffi.cast("uintptr_t", self._context))
        self._length = ffi.new("int *")
        self._send = PacketBuffer(PACKET_LIMIT)

    def protect(self, packet: bytes) -> memoryview:
        """The SRTP packet for an RTP `packet`, in the send buffer."""
        # (protect and protect_rtcp differ in two names: each inline, one call a packet)
        size = len(packet)
        if size > PACKET_LIMIT - SRTP_MAX_TRAILER_LEN:
            raise ValueError("packet is too long")
        buffer = self._send
        buffer.data[:size] = packet  # (same length: a copy, never a resize)
        length = self._length
        length[0] = size
        rc = lib.srtp_protect(self._context, buffer.pointer, length)
        if rc != _OK:
            _raise(rc)
        return buffer.view[: length[0]]

    def protect_rtcp(self, packet: bytes) -> memoryview:
        """The SRTCP packet for an RTCP `packet`, in the send buffer."""
        size = len(packet)
        if size > PACKET_LIMIT - SRTP_MAX_SRTCP_TRAILER_LEN:
            raise ValueError("packet is too long")
        buffer = self._send
        buffer.data[:size] = packet
        length = self._length
        length[0] = size
        rc = lib.srtp_protect_rtcp(self._context, buffer.pointer, length)
        if rc != _OK:
            _raise(rc)
        return buffer.view[: length[0]]

    def unprotect(self, buffer: PacketBuffer, size: int) -> int:
        """Decrypt and authenticate the SRTP packet in `buffer`'s first `size` bytes in
        place; the RTP packet's length (pylibsrtp.Error if it fails: drop it)."""
        if size > PACKET_LIMIT or size > buffer.size:
            raise ValueError("packet is too long")
        length = self._length
        length[0] = size
        rc = lib.srtp_unprotect(self._context, buffer.pointer, length)
        if rc != _OK:
            _raise(rc)
        return length[0]

    def unprotect_rtcp(self, buffer: PacketBuffer, size: int) -> int:
        """As :meth:`unprotect`, for an SRTCP packet."""
        if size > PACKET_LIMIT or size > buffer.size:
            raise ValueError("packet is too long")
        length = self._length
        length[0] = size
        rc = lib.srtp_unprotect_rtcp(self._context, buffer.pointer, length)
        if rc != _OK:
            _raise(rc)
        return length[0]
