/* The sidecar's per-packet steps in C (lens/media/native.py says how they are built, found
 * and used; the Python paths they stand for stay, used wherever this module is not built):
 *
 * - send_rtp: write an RTP packet, keep it for the technician's NACKs, SRTP-protect it and
 *   send it, in one call (passthrough.PacketSender.send_rtp's Python path);
 * - receive: read one datagram with its kernel arrival stamp and, when it is SRTP/SRTCP and
 *   the leg decrypts inline, unprotect it in place and hand back the plaintext
 *   (udp.UdpTransport._read_ready and passthrough.InlineMediaQueue._inline's Python path);
 * - parse_rtp: a decrypted RTP packet's header fields and one two-byte header extension's
 *   value (transport-cc's sequence number) (passthrough.LeanReceive.handle's Python path);
 * - forward: one packet of the phone's, rewritten for a technician's leg and sent, with the
 *   forwarder's, the rewriter's and the sender's bookkeeping: the steady state of
 *   forwarder.VideoForwarder.forward / AudioForwarder.forward, LegRewriter.media and
 *   passthrough.PacketSender.send_rtp. It reads and writes those Python objects' attributes
 *   by name (aiortc's own through names passthrough.py hands to configure(), the one place
 *   that knows them) and declines (returns False, nothing done) whatever is not the steady
 *   state: the Python twins take it.
 *
 * libsrtp is pylibsrtp's own copy: its srtp_protect and the leg's context (srtp_t) come in
 * as addresses read through pylibsrtp's cffi objects (lens/media/srtp.py), so the keys,
 * policies and replay windows stay pylibsrtp's and aiortc's. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define PACKET_LIMIT 1500       /* pylibsrtp's buffer: a packet plus its trailer */
#define SRTP_MAX_TRAILER_LEN 144 /* pylibsrtp.SRTP_MAX_TRAILER_LEN */
#define SRTP_MAX_SRTCP_TRAILER_LEN 148

typedef int (*protect_fn)(void *context, void *packet, int *length);

static unsigned char send_buffer[PACKET_LIMIT];
static PyObject *ProtectError; /* lens.media._native.ProtectError(rc) */

/* `addr` as aioice gives a pair's remote address: (host, port) or (host, port, flowinfo,
 * scope_id), host a numeric IPv4 or IPv6 address. 0 if it is none of these (nothing set). */
static socklen_t parse_address(PyObject *addr, struct sockaddr_storage *out) {
    if (!PyTuple_Check(addr)) return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(addr);
    if (n != 2 && n != 4) return 0;
    PyObject *host = PyTuple_GET_ITEM(addr, 0), *port_obj = PyTuple_GET_ITEM(addr, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(port_obj)) return 0;
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL) {
        PyErr_Clear();
        return 0;
    }
    long port = PyLong_AsLong(port_obj);
    if (port < 0 || port > 65535) {
        PyErr_Clear();
        return 0;
    }
    memset(out, 0, sizeof(*out));
    if (n == 2) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)out;
        if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons((uint16_t)port);
            return sizeof(*v4);
        }
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET6, text, &v6->sin6_addr) != 1) return 0;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    if (n == 4) {
        PyObject *flow = PyTuple_GET_ITEM(addr, 2), *scope = PyTuple_GET_ITEM(addr, 3);
        if (!PyLong_Check(flow) || !PyLong_Check(scope)) return 0;
        v6->sin6_flowinfo = htonl((uint32_t)PyLong_AsUnsignedLongMask(flow));
        v6->sin6_scope_id = (uint32_t)PyLong_AsUnsignedLongMask(scope);
    }
    return sizeof(*v6);
}

static int get_buffer(PyObject *obj, Py_buffer *view) {
    return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE);
}

/* Write the RTP packet, keep (seq, bytes, header length) in history[slot], SRTP-protect a
 * copy and send it: 0 sent (*length: the datagram's size), 1 the kernel could not take it now
 * (dropped), 2 libsrtp refused it (*length: its error code; no exception set: the caller
 * raises its own), -1 an exception is set (ValueError: too long; OSError from sendto, the
 * packet being in the history then). */
static int send_core(void *protect, void *context, int fd, struct sockaddr_storage *address,
                     socklen_t address_size, long marker_type, long seq, unsigned long timestamp,
                     unsigned long ssrc, const Py_buffer *extensions, const char *payload,
                     Py_ssize_t payload_len, PyObject *history, Py_ssize_t slot, int *length) {
    Py_ssize_t header = 12 + extensions->len;
    Py_ssize_t size = header + payload_len;
    if (size > PACKET_LIMIT - SRTP_MAX_TRAILER_LEN) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return -1;
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) return -1;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
    out[0] = extensions->len ? 0x90 : 0x80;
    out[1] = (unsigned char)marker_type;
    out[2] = (unsigned char)(seq >> 8);
    out[3] = (unsigned char)seq;
    out[4] = (unsigned char)(timestamp >> 24);
    out[5] = (unsigned char)(timestamp >> 16);
    out[6] = (unsigned char)(timestamp >> 8);
    out[7] = (unsigned char)timestamp;
    out[8] = (unsigned char)(ssrc >> 24);
    out[9] = (unsigned char)(ssrc >> 16);
    out[10] = (unsigned char)(ssrc >> 8);
    out[11] = (unsigned char)ssrc;
    memcpy(out + 12, extensions->buf, extensions->len);
    memcpy(out + header, payload, payload_len);
    PyObject *entry = Py_BuildValue("(lNn)", seq, data, header); /* (takes `data`) */
    if (entry == NULL) return -1;
    memcpy(send_buffer, out, size);
    PyList_SetItem(history, slot, entry); /* steals `entry`, releases what the slot held */
    *length = (int)size;
    int rc = ((protect_fn)protect)(context, send_buffer, length);
    if (rc != 0) {
        *length = rc;
        return 2;
    }
    ssize_t sent = sendto(fd, send_buffer, (size_t)*length, 0, (struct sockaddr *)address,
                          address_size);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 1;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* send_rtp(protect, context, fd, addr, marker_type, seq, timestamp, ssrc, extensions,
 *          payload, history, slot) -> int
 *
 * Writes the RTP packet (version 2, no padding, `extensions` a header-extension block or
 * b""; `marker_type` the second byte: marker << 7 | payload type), stores
 * (seq, packet bytes, header length) in history[slot], SRTP-protects a copy and sends it to
 * `addr` on the socket `fd`. Returns the SRTP datagram's size, -1 if the kernel could not take
 * it now (dropped), -2 if `addr` is not a numeric address this function handles (nothing done:
 * the caller sends it its own way). Raises ValueError for a packet too long, ProtectError(rc)
 * if libsrtp fails, OSError for other send errors (the packet is in the history then). */
static PyObject *send_rtp(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "send_rtp takes 12 arguments");
        return NULL;
    }
    void *protect = PyLong_AsVoidPtr(args[0]);
    void *context = PyLong_AsVoidPtr(args[1]);
    int fd = (int)PyLong_AsLong(args[2]);
    long marker_type = PyLong_AsLong(args[4]);
    long seq = PyLong_AsLong(args[5]);
    unsigned long timestamp = PyLong_AsUnsignedLongMask(args[6]);
    unsigned long ssrc = PyLong_AsUnsignedLongMask(args[7]);
    Py_ssize_t slot = PyLong_AsSsize_t(args[11]);
    if (PyErr_Occurred()) return NULL;
    PyObject *history = args[10];
    if (!PyList_Check(history) || slot < 0 || slot >= PyList_GET_SIZE(history)) {
        PyErr_SetString(PyExc_IndexError, "history slot out of range");
        return NULL;
    }
    if (protect == NULL || context == NULL || fd < 0 || marker_type < 0 || marker_type > 255 ||
        seq < 0 || seq > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "bad send_rtp argument");
        return NULL;
    }
    struct sockaddr_storage address;
    socklen_t address_size = parse_address(args[3], &address);
    if (address_size == 0) return PyLong_FromLong(-2);

    Py_buffer extensions, payload;
    if (get_buffer(args[8], &extensions) < 0) return NULL;
    if (get_buffer(args[9], &payload) < 0) {
        PyBuffer_Release(&extensions);
        return NULL;
    }
    int length = 0;
    int status = send_core(protect, context, fd, &address, address_size, marker_type, seq,
                           timestamp, ssrc, &extensions, payload.buf, payload.len, history, slot,
                           &length);
    PyBuffer_Release(&extensions);
    PyBuffer_Release(&payload);
    if (status < 0) return NULL;
    if (status == 2) {
        PyObject *code = PyLong_FromLong(length);
        if (code != NULL) {
            PyErr_SetObject(ProtectError, code);
            Py_DECREF(code);
        }
        return NULL;
    }
    return PyLong_FromLong(status == 1 ? -1 : length);
}

/* (host, port) or (host, port, flowinfo, scope_id), as Python's socket module gives them */
static PyObject *address_tuple(const struct sockaddr_storage *address) {
    char text[INET6_ADDRSTRLEN];
    if (address->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        if (inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text)) == NULL) goto none;
        return Py_BuildValue("(si)", text, ntohs(v4->sin_port));
    }
    if (address->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        if (inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text)) == NULL) goto none;
        return Py_BuildValue("(siII)", text, ntohs(v6->sin6_port),
                             (unsigned int)ntohl(v6->sin6_flowinfo),
                             (unsigned int)v6->sin6_scope_id);
    }
none:
    Py_RETURN_NONE;
}

/* receive(fd, buffer, stamped, unprotect, unprotect_rtcp, context)
 *     -> None | (status, value, arrival, extra)
 *
 * Reads one datagram from the non-blocking socket `fd` into `buffer` (a writable buffer, at
 * least PACKET_LIMIT bytes); None if there is none now. `arrival`: the kernel's
 * SO_TIMESTAMPNS stamp in seconds (CLOCK_REALTIME) when `stamped` and the kernel gave one,
 * else None. With `context` (a libsrtp srtp_t's address, 0: none) and an SRTP/SRTCP
 * datagram (RFC 7983: first byte 128-191) it is unprotected in place:
 *   (1, RTP plaintext bytes, arrival, datagram size), (2, RTCP plaintext bytes, ...), or
 *   (-rc, None, arrival, datagram size) if libsrtp refused it (rc: its error code);
 * anything else is left in `buffer` as it came: (0, size, arrival, sender's address).
 * OSError for a failed read (e.g. ICMP port unreachable for an earlier send). */
static PyObject *receive(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "receive takes 6 arguments");
        return NULL;
    }
    int fd = (int)PyLong_AsLong(args[0]);
    int stamped = PyObject_IsTrue(args[2]);
    void *unprotect = PyLong_AsVoidPtr(args[3]);
    void *unprotect_rtcp = PyLong_AsVoidPtr(args[4]);
    void *context = PyLong_AsVoidPtr(args[5]);
    if (PyErr_Occurred()) return NULL;
    if (fd < 0 || stamped < 0) {
        PyErr_SetString(PyExc_ValueError, "bad receive argument");
        return NULL;
    }
    Py_buffer buffer;
    if (PyObject_GetBuffer(args[1], &buffer, PyBUF_WRITABLE) < 0) return NULL;
    PyObject *result = NULL;
    if (buffer.len < PACKET_LIMIT) {
        PyErr_SetString(PyExc_ValueError, "receive buffer too small");
        goto done;
    }
    struct sockaddr_storage address;
    struct iovec io = {buffer.buf, (size_t)buffer.len};
    union {
        char space[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } control;
    struct msghdr message = {0};
    message.msg_name = &address;
    message.msg_namelen = sizeof(address);
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    if (stamped) {
        message.msg_control = control.space;
        message.msg_controllen = sizeof(control.space);
    }
    ssize_t size = recvmsg(fd, &message, 0);
    if (size < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            result = Py_NewRef(Py_None);
        } else {
            PyErr_SetFromErrno(PyExc_OSError);
        }
        goto done;
    }
    PyObject *arrival = NULL;
    if (stamped) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c != NULL; c = CMSG_NXTHDR(&message, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
                struct timespec stamp;
                memcpy(&stamp, CMSG_DATA(c), sizeof(stamp));
                arrival = PyFloat_FromDouble((double)stamp.tv_sec + stamp.tv_nsec / 1e9);
                if (arrival == NULL) goto done;
            }
        }
    }
    if (arrival == NULL) arrival = Py_NewRef(Py_None);
    unsigned char *data = buffer.buf;
    if (context != NULL && size > 0 && data[0] > 127 && data[0] < 192 && size <= PACKET_LIMIT) {
        int rtcp = size > 1 && data[1] > 191 && data[1] < 209; /* (aiortc's is_rtcp) */
        int length = (int)size;
        int rc = ((protect_fn)(rtcp ? unprotect_rtcp : unprotect))(context, data, &length);
        if (rc != 0) {
            result = Py_BuildValue("(iOOn)", -rc, Py_None, arrival, (Py_ssize_t)size);
        } else {
            PyObject *plain = PyBytes_FromStringAndSize((const char *)data, length);
            if (plain != NULL) {
                result = Py_BuildValue("(iNOn)", rtcp ? 2 : 1, plain, arrival, (Py_ssize_t)size);
            }
        }
    } else {
        PyObject *sender = address_tuple(&address);
        if (sender != NULL) {
            result = Py_BuildValue("(inON)", 0, (Py_ssize_t)size, arrival, sender);
        }
    }
    Py_DECREF(arrival);
done:
    PyBuffer_Release(&buffer);
    return result;
}

/* A two-byte header extension's value (transport-cc's sequence number) in the extension
 * elements data[start:end] of `profile`, or -1 (passthrough._extension_value, the same
 * rules). */
static long extension_value(const unsigned char *data, Py_ssize_t start, Py_ssize_t end,
                            unsigned int profile, long wanted) {
    Py_ssize_t i = start;
    if (profile == 0xBEDE) { /* one-byte elements */
        while (i < end) {
            unsigned char byte = data[i];
            if (byte == 0) { /* padding */
                i += 1;
                continue;
            }
            long id = byte >> 4, length = (byte & 0x0F) + 1;
            if (id == 15) return -1;
            if (id == wanted) {
                return length == 2 && i + 3 <= end ? (data[i + 1] << 8) | data[i + 2] : -1;
            }
            i += 1 + length;
        }
    } else if ((profile & 0xFFF0) == 0x1000) { /* two-byte elements */
        while (i + 1 < end) {
            long id = data[i];
            if (id == 0) {
                i += 1;
                continue;
            }
            long length = data[i + 1];
            if (id == wanted) {
                return length == 2 && i + 4 <= end ? (data[i + 2] << 8) | data[i + 3] : -1;
            }
            i += 2 + length;
        }
    }
    return -1;
}

/* parse_rtp(data, wanted) -> None | (seq, timestamp, ssrc, start, end, padding, value)
 *
 * An RTP packet of at least 12 bytes: its sequence number, timestamp and SSRC, where its
 * payload starts and ends (past the CSRCs and the header extension; before the padding),
 * its padding size and the value of the two-byte header extension element `wanted` (0: none
 * asked), -1 if absent. None if it is malformed (the extension or the padding overruns it).
 * (passthrough.LeanReceive.handle reads the payload type and marker itself, before.) */
static PyObject *parse_rtp(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "parse_rtp takes 2 arguments");
        return NULL;
    }
    long wanted = PyLong_AsLong(args[1]);
    if (wanted == -1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *data = view.buf;
    Py_ssize_t size = view.len;
    PyObject *result = NULL;
    if (size < 12) {
        PyErr_SetString(PyExc_ValueError, "not an RTP packet: shorter than 12 bytes");
        goto done;
    }
    unsigned char first = data[0];
    Py_ssize_t pos = 12 + 4 * (first & 0x0F);
    long value = -1;
    if (first & 0x10) {
        if (size < pos + 4) goto malformed;
        unsigned int profile = (data[pos] << 8) | data[pos + 1];
        Py_ssize_t words = (data[pos + 2] << 8) | data[pos + 3];
        Py_ssize_t start = pos + 4;
        pos = start + 4 * words;
        if (wanted) {
            /* (as Python's slicing-free reads: elements past the packet's end are not read) */
            value = extension_value(data, start, pos < size ? pos : size, profile, wanted);
        }
    }
    Py_ssize_t end = size, padding = 0;
    if (first & 0x20) {
        padding = data[size - 1];
        end -= padding;
    }
    if (pos > end) goto malformed;
    result = Py_BuildValue(
        "(lkknnnl)", (long)((data[2] << 8) | data[3]),
        (unsigned long)data[4] << 24 | (unsigned long)data[5] << 16 | (unsigned long)data[6] << 8 |
            data[7],
        (unsigned long)data[8] << 24 | (unsigned long)data[9] << 16 | (unsigned long)data[10] << 8 |
            data[11],
        pos, end, padding, value);
    goto done;
malformed:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return result;
}

/* ----- forward: the steady state of a forwarder's packet, in one call ---------------------- */

static struct {
    int ready;
    PyObject *send_rtp;        /* passthrough.PacketSender.send_rtp (the function) */
    PyObject *connected;       /* aiortc's DtlsState.CONNECTED */
    PyObject *monotonic;       /* time.monotonic: the rewriter's clock C may stand in for */
    PyObject *srtp_error;      /* pylibsrtp.Error */
    PyObject *srtp_errors;     /* pylibsrtp.ERRORS: rc -> message */
    void *protect;             /* srtp_protect */
    double ntp_offset;         /* seconds from 1900 to 1970 */
    /* aiortc's attributes (name-mangled), from passthrough.py */
    PyObject *tx_bytes, *tx_packets, *ntp_timestamp, *rtp_timestamp, *octet_count,
        *packet_count;
} cfg;

/* Lens's own attribute names (forwarder.py, passthrough.py, udp.py, srtp.py, relay.py) */
static PyObject *n_rewriter, *n_waiting, *n_clock, *n_vp8, *n_video, *n_payload, *n_send,
    *n_dtls, *n_state, *n_send_path, *n_direct, *n_nominated, *n_pair, *n_srtp, *n_session,
    *n_tx_srtp, *n_native, *n_native_fd, *n_addr, *n_extensions, *n_playout_floor,
    *n_playout_delay_id, *n_with_delay, *n_sequence_number, *n_timestamp, *n_marker,
    *n_start_seq, *n_seq_offset, *n_ts_offset, *n_picture_offset, *n_tl0_offset, *n_out_seq,
    *n_out_ts, *n_out_picture_id, *n_out_tl0, *n_sent_at, *n_payload_type, *n_ssrc,
    *n_history, *n_history_size, *n_address, *n_send_dropped, *n_protocol,
    *n_error_received, *n_report_timestamp, *n_sender, *n_packets_forwarded, *n_stats,
    *n_totals, *n_bytes_forwarded, *n_frames_forwarded, *n_keyframes_forwarded,
    *n_resolution, *n_restart, *n_path_dtls;

static int intern_names(void) {
#define NAME(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return -1;
    NAME(n_rewriter, "rewriter") NAME(n_waiting, "waiting") NAME(n_clock, "_clock")
    NAME(n_vp8, "_vp8") NAME(n_video, "_video") NAME(n_payload, "payload")
    NAME(n_send, "_send") NAME(n_dtls, "_dtls") NAME(n_state, "_state")
    NAME(n_send_path, "_send_path") NAME(n_direct, "_direct") NAME(n_nominated, "_nominated")
    NAME(n_pair, "_pair") NAME(n_srtp, "_srtp") NAME(n_session, "session")
    NAME(n_tx_srtp, "_tx_srtp") NAME(n_native, "_native") NAME(n_native_fd, "native_fd")
    NAME(n_addr, "_addr") NAME(n_extensions, "_extensions")
    NAME(n_playout_floor, "_playout_floor") NAME(n_playout_delay_id, "_playout_delay_id")
    NAME(n_with_delay, "_with_delay") NAME(n_sequence_number, "sequence_number")
    NAME(n_timestamp, "timestamp") NAME(n_marker, "marker") NAME(n_start_seq, "_start_seq")
    NAME(n_seq_offset, "_seq_offset") NAME(n_ts_offset, "_ts_offset")
    NAME(n_picture_offset, "_picture_offset") NAME(n_tl0_offset, "_tl0_offset")
    NAME(n_out_seq, "_out_seq") NAME(n_out_ts, "_out_ts")
    NAME(n_out_picture_id, "_out_picture_id") NAME(n_out_tl0, "_out_tl0")
    NAME(n_sent_at, "_sent_at") NAME(n_payload_type, "payload_type") NAME(n_ssrc, "ssrc")
    NAME(n_history, "_history") NAME(n_history_size, "_history_size")
    NAME(n_address, "address") NAME(n_send_dropped, "send_dropped")
    NAME(n_protocol, "_protocol") NAME(n_error_received, "error_received")
    NAME(n_report_timestamp, "_report_timestamp") NAME(n_sender, "_sender")
    NAME(n_packets_forwarded, "packets_forwarded") NAME(n_stats, "stats")
    NAME(n_totals, "_totals") NAME(n_bytes_forwarded, "bytes_forwarded")
    NAME(n_frames_forwarded, "frames_forwarded")
    NAME(n_keyframes_forwarded, "keyframes_forwarded") NAME(n_resolution, "resolution")
    NAME(n_restart, "restart") NAME(n_path_dtls, "dtls")
#undef NAME
    return 0;
}

/* configure(send_rtp, connected, monotonic, srtp_error, srtp_errors, protect, ntp_offset,
 *           names) -- names: aiortc's attribute names, a dict with the keys tx_bytes,
 * tx_packets (RTCDtlsTransport's), ntp_timestamp, rtp_timestamp, octet_count, packet_count
 * (RTCRtpSender's). Until it is called, forward() declines every packet. */
static PyObject *configure(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8 || !PyDict_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "configure takes 8 arguments, the last a dict");
        return NULL;
    }
    void *protect = PyLong_AsVoidPtr(args[5]);
    double offset = PyFloat_AsDouble(args[6]);
    if (PyErr_Occurred()) return NULL;
    PyObject **slots[] = {&cfg.tx_bytes, &cfg.tx_packets, &cfg.ntp_timestamp,
                          &cfg.rtp_timestamp, &cfg.octet_count, &cfg.packet_count};
    const char *keys[] = {"tx_bytes", "tx_packets", "ntp_timestamp",
                          "rtp_timestamp", "octet_count", "packet_count"};
    for (int i = 0; i < 6; i++) {
        PyObject *name = PyDict_GetItemString(args[7], keys[i]);
        if (name == NULL || !PyUnicode_Check(name)) {
            PyErr_Format(PyExc_KeyError, "configure: no name for %s", keys[i]);
            return NULL;
        }
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        Py_XSETREF(*slots[i], name);
    }
    Py_XSETREF(cfg.send_rtp, Py_NewRef(args[0]));
    Py_XSETREF(cfg.connected, Py_NewRef(args[1]));
    Py_XSETREF(cfg.monotonic, Py_NewRef(args[2]));
    Py_XSETREF(cfg.srtp_error, Py_NewRef(args[3]));
    Py_XSETREF(cfg.srtp_errors, Py_NewRef(args[4]));
    cfg.protect = protect;
    cfg.ntp_offset = offset;
    cfg.ready = protect != NULL;
    Py_RETURN_NONE;
}

/* obj.name as a C long (-1 and an exception if it is no int) */
static int read_long(PyObject *obj, PyObject *name, long *out) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) return -1;
    *out = PyLong_AsLong(value);
    Py_DECREF(value);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int write_long(PyObject *obj, PyObject *name, long value) {
    PyObject *number = PyLong_FromLong(value);
    if (number == NULL) return -1;
    int rc = PyObject_SetAttr(obj, name, number);
    Py_DECREF(number);
    return rc;
}

/* obj.name += delta (ints of any size: aiortc's counters) */
static int add_long(PyObject *obj, PyObject *name, long delta) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) return -1;
    PyObject *step = PyLong_FromLong(delta);
    PyObject *sum = step == NULL ? NULL : PyNumber_Add(value, step);
    Py_DECREF(value);
    Py_XDECREF(step);
    if (sum == NULL) return -1;
    int rc = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return rc;
}

/* 1 if obj.name is true, 0 if false, -1 on error */
static int read_true(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

static double clock_seconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + now.tv_nsec * 1e-9;
}

typedef struct {
    int start, keyframe;
    Py_ssize_t picture_id_at, tl0_at, header_len; /* -1: absent */
    int picture_id_bits;
} vp8_descriptor;

/* forwarder.parse_vp8, the same rules; 0 if the payload is too short to be VP8 */
static int parse_vp8(const unsigned char *payload, Py_ssize_t size, vp8_descriptor *d) {
    if (size == 0) return 0;
    unsigned char first = payload[0];
    Py_ssize_t pos = 1;
    d->picture_id_at = d->tl0_at = -1;
    d->picture_id_bits = 0;
    if (first & 0x80) {
        if (size < 2) return 0;
        unsigned char ext = payload[1];
        pos = 2;
        if (ext & 0x80) {
            if (size <= pos) return 0;
            d->picture_id_at = pos;
            if (payload[pos] & 0x80) {
                d->picture_id_bits = 15;
                pos += 2;
            } else {
                d->picture_id_bits = 7;
                pos += 1;
            }
        }
        if (ext & 0x40) {
            d->tl0_at = pos;
            pos += 1;
        }
        if (ext & 0x30) pos += 1;
    }
    if (size < pos) return 0;
    d->start = (first & 0x17) == 0x10;
    d->keyframe = d->start && size > pos && (payload[pos] & 0x01) == 0;
    d->header_len = pos;
    return 1;
}

/* forward(forwarder, packet, audio) -> bool
 *
 * One packet with payload (an RtpView or aiortc RtpPacket) for `forwarder` (a VideoForwarder
 * of VP8, or an AudioForwarder when `audio`), whose rewriter is not waiting for a keyframe:
 * rewritten (LegRewriter.media), sent on the leg's socket (PacketSender.send_rtp's native
 * branch) and counted (the forwarder's stats, the sender's reports, the transport's
 * counters), exactly as the Python twins do. True: done (sent, or dropped as stale, as they
 * would). False: declined before anything was done (not configured, H.264, a test clock, a
 * send that is not a PacketSender's, no connected leg or kept pair, a playout delay not yet
 * written, a VP8 payload too short): the Python twins take the packet. */
static PyObject *forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "forward takes 3 arguments");
        return NULL;
    }
    if (!cfg.ready) Py_RETURN_FALSE;
    PyObject *fwd = args[0], *packet = args[1];
    int audio = PyObject_IsTrue(args[2]);
    PyObject *result = NULL;
    /* new references, released at `out` */
    PyObject *rw = NULL, *payload = NULL, *send = NULL, *dtls = NULL, *state = NULL,
             *path = NULL, *path_dtls = NULL, *nominated = NULL, *kept_pair = NULL, *srtp = NULL,
             *session = NULL, *tx_srtp = NULL, *native = NULL, *addr = NULL, *extensions = NULL,
             *floor = NULL, *delay = NULL, *history = NULL, *out_payload = NULL,
             *context = NULL, *clock = NULL, *aio_sender = NULL, *stats = NULL, *totals = NULL;
    Py_buffer ext_view = {0};

#define DECLINE      \
    {                \
        result = Py_NewRef(Py_False); \
        goto out;    \
    }
#define FAIL goto out
    if (audio < 0) FAIL;
    if ((rw = PyObject_GetAttr(fwd, n_rewriter)) == NULL) FAIL;
    int flag = read_true(rw, n_waiting);
    if (flag < 0) FAIL;
    if (flag) DECLINE;
    if ((clock = PyObject_GetAttr(rw, n_clock)) == NULL) FAIL;
    if (clock != cfg.monotonic) DECLINE;
    int vp8 = read_true(rw, n_vp8), video = read_true(rw, n_video);
    if (vp8 < 0 || video < 0) FAIL;
    if (video == audio || (video && !vp8)) DECLINE; /* (H.264: Python's) */
    if ((payload = PyObject_GetAttr(packet, n_payload)) == NULL) FAIL;
    if (!PyBytes_CheckExact(payload) || PyBytes_GET_SIZE(payload) == 0) DECLINE;
    if ((send = PyObject_GetAttr(fwd, n_send)) == NULL) FAIL;
    if (!PyMethod_Check(send) || PyMethod_GET_FUNCTION(send) != cfg.send_rtp) DECLINE;
    PyObject *sender = PyMethod_GET_SELF(send); /* (borrowed: `send` holds it) */

    /* the leg: what PacketSender.send_rtp checks before its native branch */
    if ((dtls = PyObject_GetAttr(sender, n_dtls)) == NULL) FAIL;
    if (dtls == Py_None) DECLINE;
    if ((state = PyObject_GetAttr(dtls, n_state)) == NULL) FAIL;
    if (state != cfg.connected) DECLINE;
    if ((path = PyObject_GetAttr(sender, n_send_path)) == NULL) FAIL;
    if (path == Py_None) DECLINE;
    if ((path_dtls = PyObject_GetAttr(path, n_path_dtls)) == NULL) FAIL;
    if (path_dtls != dtls) DECLINE;
    if ((flag = read_true(path, n_direct)) < 0) FAIL;
    if (!flag) DECLINE;
    if ((nominated = PyObject_GetAttr(path, n_nominated)) == NULL) FAIL;
    if ((kept_pair = PyObject_GetAttr(path, n_pair)) == NULL) FAIL;
    if (!PyDict_Check(nominated)) DECLINE;
    PyObject *one = PyLong_FromLong(1);
    if (one == NULL) FAIL;
    PyObject *pair = PyDict_GetItemWithError(nominated, one); /* borrowed */
    Py_DECREF(one);
    if (pair == NULL && PyErr_Occurred()) FAIL;
    if (pair == NULL || pair != kept_pair) DECLINE;
    if ((srtp = PyObject_GetAttr(path, n_srtp)) == NULL) FAIL;
    if (srtp == Py_None) DECLINE;
    if ((session = PyObject_GetAttr(srtp, n_session)) == NULL) FAIL;
    if ((tx_srtp = PyObject_GetAttr(dtls, n_tx_srtp)) == NULL) FAIL;
    if (session != tx_srtp) DECLINE;
    if ((native = PyObject_GetAttr(path, n_native)) == NULL) FAIL;
    if (native == Py_None) DECLINE;
    long fd;
    if (read_long(native, n_native_fd, &fd) < 0) FAIL;
    if (fd < 0) DECLINE;
    if ((addr = PyObject_GetAttr(path, n_addr)) == NULL) FAIL;
    struct sockaddr_storage address;
    socklen_t address_size = parse_address(addr, &address);
    if (address_size == 0) DECLINE;
    if ((extensions = PyObject_GetAttr(sender, n_extensions)) == NULL) FAIL;
    if (!PyBytes_CheckExact(extensions)) DECLINE;

    /* the packet as the rewriter would send it (LegRewriter.media), decided before any write */
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t size = PyBytes_GET_SIZE(payload);
    vp8_descriptor d = {0};
    if (vp8 && !parse_vp8(data, size, &d)) DECLINE; /* (Python's then asks H.264's test) */
    long seq, timestamp, start_seq, seq_offset, ts_offset, out_seq_now;
    if (read_long(packet, n_sequence_number, &seq) < 0 ||
        read_long(packet, n_timestamp, &timestamp) < 0 || read_long(rw, n_start_seq, &start_seq) < 0)
        FAIL;
    int marker = read_true(packet, n_marker);
    if (marker < 0) FAIL;
    long stale = (start_seq - seq) & 0xFFFF;
    if (0 < stale && stale < 0x8000) { /* sent before the stream (re)started here: dropped */
        result = Py_NewRef(Py_True);
        goto out;
    }
    /* the playout delay (VideoForwarder.forward): at a frame's first packet */
    if (!audio) {
        if ((floor = PyObject_GetAttr(fwd, n_playout_floor)) == NULL) FAIL;
        if (floor != Py_None && d.start) {
            int delay_id = read_true(sender, n_playout_delay_id);
            if (delay_id < 0) FAIL;
            PyObject *value = PyObject_CallNoArgs(floor);
            if (value == NULL) FAIL;
            double seconds = PyFloat_AsDouble(value);
            Py_DECREF(value);
            if (seconds == -1.0 && PyErr_Occurred()) FAIL;
            if (delay_id) {
                PyObject *low = PyLong_FromDouble(nearbyint(seconds * 100));
                if (low == NULL) FAIL;
                delay = Py_BuildValue("(Ni)", low, 1000);
                if (delay == NULL) FAIL;
                PyObject *with_delay = PyObject_GetAttr(sender, n_with_delay);
                if (with_delay == NULL) FAIL;
                PyObject *block = PyDict_Check(with_delay)
                                      ? PyDict_GetItemWithError(with_delay, delay)
                                      : NULL;
                Py_XINCREF(block);
                Py_DECREF(with_delay);
                if (block == NULL) {
                    if (PyErr_Occurred()) FAIL;
                    DECLINE; /* (the block for this delay is written by Python, once) */
                }
                Py_SETREF(extensions, block);
                if (!PyBytes_CheckExact(extensions)) DECLINE;
            }
        }
    }
    long history_size, payload_type, ssrc;
    if ((history = PyObject_GetAttr(sender, n_history)) == NULL) FAIL;
    if (read_long(sender, n_history_size, &history_size) < 0 ||
        read_long(rw, n_payload_type, &payload_type) < 0 || read_long(rw, n_ssrc, &ssrc) < 0 ||
        read_long(rw, n_seq_offset, &seq_offset) < 0 || read_long(rw, n_ts_offset, &ts_offset) < 0 ||
        read_long(rw, n_out_seq, &out_seq_now) < 0)
        FAIL;
    if (!PyList_Check(history) || history_size <= 0 || PyList_GET_SIZE(history) != history_size)
        DECLINE;
    if ((context = PyObject_GetAttr(srtp, n_address)) == NULL) FAIL;
    void *context_address = PyLong_AsVoidPtr(context);
    if (context_address == NULL) {
        if (PyErr_Occurred()) FAIL;
        DECLINE;
    }

    /* from here on the packet is the native step's: the rewriter's writes */
    long out_seq = (seq + seq_offset) & 0xFFFF;
    unsigned long out_ts = ((unsigned long)timestamp + (unsigned long)ts_offset) & 0xFFFFFFFFUL;
    const char *send_data = (const char *)data;
    if (vp8 && (d.picture_id_at >= 0 || d.tl0_at >= 0)) {
        if ((out_payload = PyBytes_FromStringAndSize((const char *)data, size)) == NULL) FAIL;
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out_payload);
        if (d.picture_id_at >= 0) {
            long offset, picture_id;
            if (read_long(rw, n_picture_offset, &offset) < 0) FAIL;
            Py_ssize_t at = d.picture_id_at;
            if (d.picture_id_bits == 15) {
                picture_id = ((((p[at] & 0x7F) << 8) | p[at + 1]) + offset) & 0x7FFF;
                p[at] = 0x80 | (unsigned char)(picture_id >> 8);
                p[at + 1] = picture_id & 0xFF;
            } else {
                picture_id = ((p[at] & 0x7F) + offset) & 0x7F;
                p[at] = (unsigned char)picture_id;
            }
            if (write_long(rw, n_out_picture_id, picture_id) < 0) FAIL;
        }
        if (d.tl0_at >= 0) {
            long offset;
            if (read_long(rw, n_tl0_offset, &offset) < 0) FAIL;
            long tl0 = (p[d.tl0_at] + offset) & 0xFF;
            p[d.tl0_at] = (unsigned char)tl0;
            if (write_long(rw, n_out_tl0, tl0) < 0) FAIL;
        }
        send_data = PyBytes_AS_STRING(out_payload);
    }
    long ahead = (out_seq - out_seq_now) & 0xFFFF;
    if (0 < ahead && ahead < 0x8000) {
        if (write_long(rw, n_out_seq, out_seq) < 0) FAIL;
        long out_ts_now;
        PyObject *now_ts = PyObject_GetAttr(rw, n_out_ts);
        if (now_ts == NULL) FAIL;
        out_ts_now = (long)PyLong_AsUnsignedLongMask(now_ts);
        Py_DECREF(now_ts);
        if (PyErr_Occurred()) FAIL;
        if ((unsigned long)out_ts_now != out_ts) {
            PyObject *value = PyLong_FromUnsignedLong(out_ts);
            if (value == NULL) FAIL;
            int rc = PyObject_SetAttr(rw, n_out_ts, value);
            Py_DECREF(value);
            if (rc < 0) FAIL;
            PyObject *at = PyFloat_FromDouble(clock_seconds(CLOCK_MONOTONIC));
            if (at == NULL) FAIL;
            rc = PyObject_SetAttr(rw, n_sent_at, at);
            Py_DECREF(at);
            if (rc < 0) FAIL;
        }
    }

    /* the send (PacketSender.send_rtp's native branch) */
    if (PyObject_GetBuffer(extensions, &ext_view, PyBUF_SIMPLE) < 0) FAIL;
    int length = 0;
    long marker_type = (marker ? 0x80 : 0) | (payload_type & 0x7F);
    int status = send_core(cfg.protect, context_address, (int)fd, &address, address_size,
                           marker_type, out_seq, out_ts, (unsigned long)ssrc, &ext_view,
                           send_data, size, history, out_seq % history_size, &length);
    long sent_size = length;
    if (status == 2) { /* libsrtp refused it: pylibsrtp's error, as from Python */
        PyObject *code = PyLong_FromLong(length);
        PyObject *message = code == NULL ? NULL : PyObject_GetItem(cfg.srtp_errors, code);
        Py_XDECREF(code);
        if (message != NULL) {
            PyErr_SetObject(cfg.srtp_error, message);
            Py_DECREF(message);
        }
        FAIL;
    }
    if (status < 0) {
        if (!PyErr_ExceptionMatches(PyExc_OSError)) FAIL;
        PyObject *type, *value, *trace; /* as UdpTransport.sendto: to the protocol */
        PyErr_Fetch(&type, &value, &trace);
        PyErr_NormalizeException(&type, &value, &trace);
        PyObject *protocol = PyObject_GetAttr(native, n_protocol);
        PyObject *answer = protocol == NULL ? NULL
                                            : PyObject_CallMethodOneArg(protocol, n_error_received,
                                                                        value ? value : Py_None);
        Py_XDECREF(protocol);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(trace);
        if (answer == NULL) FAIL;
        Py_DECREF(answer);
        sent_size = 0;
    } else if (status == 1) {
        if (add_long(native, n_send_dropped, 1) < 0) FAIL;
        sent_size = 0;
    }
    if (add_long(dtls, cfg.tx_bytes, sent_size) < 0 || add_long(dtls, cfg.tx_packets, 1) < 0) FAIL;

    /* the sender's reports: the clock once a frame, the counts every packet */
    if ((aio_sender = PyObject_GetAttr(sender, n_sender)) == NULL) FAIL;
    PyObject *reported = PyObject_GetAttr(sender, n_report_timestamp);
    if (reported == NULL) FAIL;
    int same = reported != Py_None && PyLong_Check(reported) &&
               PyLong_AsUnsignedLongMask(reported) == out_ts;
    Py_DECREF(reported);
    if (!same) {
        PyObject *value = PyLong_FromUnsignedLong(out_ts);
        if (value == NULL) FAIL;
        int rc = PyObject_SetAttr(sender, n_report_timestamp, value);
        if (rc == 0) rc = PyObject_SetAttr(aio_sender, cfg.rtp_timestamp, value);
        Py_DECREF(value);
        if (rc < 0) FAIL;
        double ntp = (clock_seconds(CLOCK_REALTIME) + cfg.ntp_offset) * 4294967296.0;
        PyObject *stamp = PyLong_FromDouble(ntp);
        if (stamp == NULL) FAIL;
        rc = PyObject_SetAttr(aio_sender, cfg.ntp_timestamp, stamp);
        Py_DECREF(stamp);
        if (rc < 0) FAIL;
    }
    if (add_long(aio_sender, cfg.octet_count, size) < 0 ||
        add_long(aio_sender, cfg.packet_count, 1) < 0)
        FAIL;

    /* the forwarder's counts */
    if ((stats = PyObject_GetAttr(fwd, n_stats)) == NULL) FAIL;
    if ((totals = PyObject_GetAttr(fwd, n_totals)) == NULL) FAIL;
    if (audio) {
        if (add_long(stats, n_frames_forwarded, 1) < 0 || add_long(stats, n_bytes_forwarded, size) < 0 ||
            add_long(totals, n_frames_forwarded, 1) < 0 || add_long(totals, n_bytes_forwarded, size) < 0)
            FAIL;
    } else {
        if (add_long(fwd, n_packets_forwarded, 1) < 0 || add_long(stats, n_bytes_forwarded, size) < 0 ||
            add_long(totals, n_bytes_forwarded, size) < 0)
            FAIL;
        if (marker && (add_long(stats, n_frames_forwarded, 1) < 0 ||
                       add_long(totals, n_frames_forwarded, 1) < 0))
            FAIL;
        if (d.keyframe) {
            if (add_long(stats, n_keyframes_forwarded, 1) < 0 ||
                add_long(totals, n_keyframes_forwarded, 1) < 0)
                FAIL;
            /* relay.vp8_resolution of the VP8 payload; kept when there is none */
            const unsigned char *frame = (const unsigned char *)send_data + d.header_len;
            Py_ssize_t left = size - d.header_len;
            if (left >= 10 && !(frame[0] & 0x01) && frame[3] == 0x9d && frame[4] == 0x01 &&
                frame[5] == 0x2a) {
                PyObject *resolution = Py_BuildValue("(ii)", (frame[6] | frame[7] << 8) & 0x3FFF,
                                                     (frame[8] | frame[9] << 8) & 0x3FFF);
                if (resolution == NULL) FAIL;
                int rc = PyObject_SetAttr(fwd, n_resolution, resolution);
                Py_DECREF(resolution);
                if (rc < 0) FAIL;
            }
        }
    }
    result = Py_NewRef(Py_True);
out:
#undef DECLINE
#undef FAIL
    if (ext_view.obj != NULL) PyBuffer_Release(&ext_view);
    Py_XDECREF(rw);
    Py_XDECREF(payload);
    Py_XDECREF(send);
    Py_XDECREF(dtls);
    Py_XDECREF(state);
    Py_XDECREF(path);
    Py_XDECREF(path_dtls);
    Py_XDECREF(nominated);
    Py_XDECREF(kept_pair);
    Py_XDECREF(srtp);
    Py_XDECREF(session);
    Py_XDECREF(tx_srtp);
    Py_XDECREF(native);
    Py_XDECREF(addr);
    Py_XDECREF(extensions);
    Py_XDECREF(floor);
    Py_XDECREF(delay);
    Py_XDECREF(history);
    Py_XDECREF(out_payload);
    Py_XDECREF(context);
    Py_XDECREF(clock);
    Py_XDECREF(aio_sender);
    Py_XDECREF(stats);
    Py_XDECREF(totals);
    return result;
}

static PyMethodDef methods[] = {
    {"send_rtp", (PyCFunction)(void (*)(void))send_rtp, METH_FASTCALL,
     "Write, keep, SRTP-protect and send one RTP packet (see lens/media/_native.c)."},
    {"receive", (PyCFunction)(void (*)(void))receive, METH_FASTCALL,
     "Read one datagram, stamped, and unprotect it in place (see lens/media/_native.c)."},
    {"parse_rtp", (PyCFunction)(void (*)(void))parse_rtp, METH_FASTCALL,
     "An RTP packet's header fields and one header extension (see lens/media/_native.c)."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "What forward() needs of aiortc and pylibsrtp (see lens/media/_native.c)."},
    {"forward", (PyCFunction)(void (*)(void))forward, METH_FASTCALL,
     "One packet forwarded to a leg in its steady state (see lens/media/_native.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "The sidecar's per-packet steps in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (intern_names() < 0) {
        Py_DECREF(m);
        return NULL;
    }
    ProtectError = PyErr_NewException("lens.media._native.ProtectError", NULL, NULL);
    if (ProtectError == NULL || PyModule_AddObjectRef(m, "ProtectError", ProtectError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
