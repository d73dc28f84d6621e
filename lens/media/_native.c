/* The sidecar's per-packet steps in C (lens/media/native.py says how they are built, found
 * and used; the Python paths they stand for stay, used wherever this module is not built):
 *
 * - send_rtp: write an RTP packet, keep it for the technician's NACKs, SRTP-protect it and
 *   send it, in one call (passthrough.PacketSender.send_rtp's Python path);
 * - receive: read one datagram with its kernel arrival stamp and, when it is SRTP/SRTCP and
 *   the leg decrypts inline, unprotect it in place and hand back the plaintext
 *   (udp.UdpTransport._read_ready and passthrough.InlineMediaQueue._inline's Python path);
 * - parse_rtp: a decrypted RTP packet's header fields and one two-byte header extension's
 *   value (transport-cc's sequence number) (passthrough.LeanReceive.handle's Python path).
 *
 * libsrtp is pylibsrtp's own copy: its srtp_protect and the leg's context (srtp_t) come in
 * as addresses read through pylibsrtp's cffi objects (lens/media/srtp.py), so the keys,
 * policies and replay windows stay pylibsrtp's and aiortc's. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
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
    Py_ssize_t header = 12 + extensions.len;
    Py_ssize_t size = header + payload.len;
    PyObject *result = NULL, *data = NULL, *entry = NULL;
    if (size > PACKET_LIMIT - SRTP_MAX_TRAILER_LEN) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        goto done;
    }
    data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
    out[0] = extensions.len ? 0x90 : 0x80;
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
    memcpy(out + 12, extensions.buf, extensions.len);
    memcpy(out + header, payload.buf, payload.len);
    entry = Py_BuildValue("(lOn)", seq, data, header);
    if (entry == NULL) goto done;
    PyList_SetItem(history, slot, entry); /* steals `entry`, releases what the slot held */
    entry = NULL;

    memcpy(send_buffer, out, size);
    int length = (int)size;
    int rc = ((protect_fn)protect)(context, send_buffer, &length);
    if (rc != 0) {
        PyObject *code = PyLong_FromLong(rc);
        if (code != NULL) {
            PyErr_SetObject(ProtectError, code);
            Py_DECREF(code);
        }
        goto done;
    }
    ssize_t sent = sendto(fd, send_buffer, (size_t)length, 0, (struct sockaddr *)&address,
                          address_size);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            result = PyLong_FromLong(-1);
        } else {
            PyErr_SetFromErrno(PyExc_OSError);
        }
        goto done;
    }
    result = PyLong_FromLong(length);
done:
    Py_XDECREF(data);
    Py_XDECREF(entry);
    PyBuffer_Release(&extensions);
    PyBuffer_Release(&payload);
    return result;
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

static PyMethodDef methods[] = {
    {"send_rtp", (PyCFunction)(void (*)(void))send_rtp, METH_FASTCALL,
     "Write, keep, SRTP-protect and send one RTP packet (see lens/media/_native.c)."},
    {"receive", (PyCFunction)(void (*)(void))receive, METH_FASTCALL,
     "Read one datagram, stamped, and unprotect it in place (see lens/media/_native.c)."},
    {"parse_rtp", (PyCFunction)(void (*)(void))parse_rtp, METH_FASTCALL,
     "An RTP packet's header fields and one header extension (see lens/media/_native.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "The sidecar's per-packet steps in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    ProtectError = PyErr_NewException("lens.media._native.ProtectError", NULL, NULL);
    if (ProtectError == NULL || PyModule_AddObjectRef(m, "ProtectError", ProtectError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
