# RFC 6455 frames from WebSocket subscribers. Clients mostly send control
# frames (ping, close); data frames are published when the location has
# websocket_allow_publish. Any protocol violation closes the connection
# with the close code the RFC names for it.

cdef enum:
    WS_CONT = 0x0
    WS_TEXT = 0x1
    WS_BINARY = 0x2
    WS_CLOSE = 0x8
    WS_PING = 0x9
    WS_PONG = 0xA

    WS_NORMAL = 1000
    WS_PROTOCOL_ERROR = 1002
    WS_INVALID_DATA = 1007
    WS_TOO_BIG = 1009


cdef inline bint ws_close_code_ok(int code) noexcept nogil:
    # Codes a peer may send (RFC 6455 7.4.1 and the IANA registry);
    # 1004-1006 and 1015 are reserved for local use, never on the wire.
    if 1000 <= code <= 1003 or 1007 <= code <= 1011:
        return True
    return 3000 <= code <= 4999


cdef bint utf8_ok(const char *data, size_t n):
    try:
        PyUnicode_DecodeUTF8(data, <Py_ssize_t>n, "strict")
    except UnicodeDecodeError:
        return False
    return True


cdef size_t ws_frame_header(char *out, uint8_t first, size_t n) noexcept nogil:
    """Server frame header (never masked); returns its length."""
    cdef int i
    out[0] = <char>first
    if n < 126:
        out[1] = <char>n
        return 2
    if n < 65536:
        out[1] = 126
        out[2] = <char>(n >> 8)
        out[3] = <char>(n & 0xFF)
        return 4
    out[1] = 127
    for i in range(8):
        out[2 + i] = <char>((<uint64_t>n >> (56 - 8 * i)) & 0xFF)
    return 10


cdef int ws_send_control(Hub hub, Sub *sub, uint8_t opcode,
                         const char *payload, size_t n) except -1:
    cdef char frame[2 + WS_MAX_CONTROL]
    frame[0] = <char>(0x80 | opcode)
    frame[1] = <char>n
    if n:
        memcpy(frame + 2, payload, n)
    return hub._write(sub, frame, 2 + n)


cdef int ws_fail(Hub hub, Sub *sub, int code) except -1:
    """Send a close frame with code and close once it is out."""
    cdef char payload[2]
    if sub.flags & (F_DEAD | F_CLOSING):
        return 0
    payload[0] = <char>(code >> 8)
    payload[1] = <char>(code & 0xFF)
    ws_send_control(hub, sub, WS_CLOSE, payload, 2)
    hub._close_after_flush(sub)
    return 0


cdef int ws_message(Hub hub, Sub *sub, uint8_t opcode,
                    const char *data, size_t n) except -1:
    """A whole data message arrived: validate it, publish if allowed."""
    cdef uint32_t k
    cdef list channels
    if opcode == WS_TEXT and not utf8_ok(data, n):
        return ws_fail(hub, sub, WS_INVALID_DATA)
    if not (sub.flags & F_WS_PUBLISH) or hub.on_ws_message is None or n == 0:
        return 0
    channels = [<object>sub.link0.channel] if sub.nlinks else []
    for k in range(sub.nlinks - 1 if sub.nlinks else 0):
        channels.append(<object>sub.more[k].channel)
    try:
        hub.on_ws_message(channels, PyBytes_FromStringAndSize(data, n),
                          opcode == WS_TEXT)
    except Exception as exc:
        hub.loop.call_exception_handler({
            "message": "fastpush: websocket publish failed",
            "exception": exc,
        })
    return 0


cdef inline size_t ws_limit(Hub hub, Sub *sub) noexcept:
    cdef size_t limit = 0
    if sub.form < hub.form_ws_limit_len:
        limit = hub.form_ws_limit[sub.form]
    return limit if limit else hub.ws_max_message


cdef Py_ssize_t ws_parse(Hub hub, Sub *sub, char *buf, size_t n) except -1:
    """Handle every whole frame in buf; returns the bytes consumed."""
    cdef size_t pos = 0, hlen, plen, i
    cdef size_t limit = ws_limit(hub, sub)
    cdef uint8_t b0, b1, opcode
    cdef char *payload
    cdef char *mask
    cdef int code
    cdef RBuf *rb
    while n - pos >= 2:
        if sub.flags & (F_DEAD | F_CLOSING):
            return <Py_ssize_t>n
        b0 = <uint8_t>buf[pos]
        b1 = <uint8_t>buf[pos + 1]
        opcode = b0 & 0x0F
        plen = b1 & 0x7F
        hlen = 2
        if plen == 126:
            if n - pos < 4:
                break
            plen = (<uint8_t>buf[pos + 2] << 8) | <uint8_t>buf[pos + 3]
            hlen = 4
        elif plen == 127:
            if n - pos < 10:
                break
            plen = 0
            for i in range(8):
                plen = (plen << 8) | <uint8_t>buf[pos + 2 + i]
            hlen = 10
        if b0 & 0x70 or not (b1 & 0x80):
            # Reserved bits without an extension, or a client frame that
            # is not masked (RFC 6455 5.1 requires masking).
            ws_fail(hub, sub, WS_PROTOCOL_ERROR)
            return <Py_ssize_t>n
        if opcode >= 0x8:
            if opcode > WS_PONG or not (b0 & 0x80) or plen > WS_MAX_CONTROL:
                ws_fail(hub, sub, WS_PROTOCOL_ERROR)
                return <Py_ssize_t>n
        elif opcode > WS_BINARY:
            ws_fail(hub, sub, WS_PROTOCOL_ERROR)
            return <Py_ssize_t>n
        if plen > limit:
            ws_fail(hub, sub, WS_TOO_BIG)
            return <Py_ssize_t>n
        hlen += 4
        if n - pos < hlen + plen:
            break
        mask = buf + pos + hlen - 4
        payload = buf + pos + hlen
        for i in range(plen):
            payload[i] ^= mask[i & 3]
        pos += hlen + plen

        if opcode == WS_PING:
            ws_send_control(hub, sub, WS_PONG, payload, plen)
        elif opcode == WS_PONG:
            pass
        elif opcode == WS_CLOSE:
            if plen == 0:
                code = WS_NORMAL
            elif plen == 1:
                code = WS_PROTOCOL_ERROR
            else:
                code = (<uint8_t>payload[0] << 8) | <uint8_t>payload[1]
                if not ws_close_code_ok(code):
                    code = WS_PROTOCOL_ERROR
                elif not utf8_ok(payload + 2, plen - 2):
                    code = WS_INVALID_DATA
            ws_fail(hub, sub, code)
            return <Py_ssize_t>n
        else:
            rb = sub.inp
            if opcode == WS_CONT:
                if rb == NULL or rb.msg_opcode == 0:
                    ws_fail(hub, sub, WS_PROTOCOL_ERROR)
                    return <Py_ssize_t>n
                if rb.msg_len + plen > limit:
                    ws_fail(hub, sub, WS_TOO_BIG)
                    return <Py_ssize_t>n
                rbuf_grow(&rb.msg, &rb.msg_cap, rb.msg_len + plen)
                memcpy(rb.msg + rb.msg_len, payload, plen)
                rb.msg_len += plen
                if b0 & 0x80:
                    opcode = rb.msg_opcode
                    plen = rb.msg_len
                    rb.msg_opcode = 0
                    rb.msg_len = 0
                    ws_message(hub, sub, opcode, rb.msg, plen)
            else:
                if rb != NULL and rb.msg_opcode:
                    # A new message while a fragmented one is still open.
                    ws_fail(hub, sub, WS_PROTOCOL_ERROR)
                    return <Py_ssize_t>n
                if b0 & 0x80:
                    ws_message(hub, sub, opcode, payload, plen)
                else:
                    rb = ws_rbuf(sub)
                    rbuf_grow(&rb.msg, &rb.msg_cap, plen)
                    memcpy(rb.msg, payload, plen)
                    rb.msg_len = plen
                    rb.msg_opcode = opcode
    return <Py_ssize_t>pos


cdef RBuf *ws_rbuf(Sub *sub) except NULL:
    if sub.inp == NULL:
        sub.inp = <RBuf *>calloc(1, sizeof(RBuf))
        if sub.inp == NULL:
            raise MemoryError()
    return sub.inp


cdef int ws_feed(Hub hub, Sub *sub, char *data, size_t n) except -1:
    """Bytes read from a WebSocket subscriber: parse, keep the partial tail."""
    cdef RBuf *rb = sub.inp
    cdef char *buf = data
    cdef size_t total = n
    cdef Py_ssize_t used
    if rb != NULL and rb.raw_len:
        rbuf_grow(&rb.raw, &rb.raw_cap, rb.raw_len + n)
        memcpy(rb.raw + rb.raw_len, data, n)
        rb.raw_len += n
        buf = rb.raw
        total = rb.raw_len
    used = ws_parse(hub, sub, buf, total)
    if sub.flags & (F_DEAD | F_CLOSING):
        return 0
    rb = sub.inp
    if <size_t>used < total:
        rb = ws_rbuf(sub)
        if buf == rb.raw:
            memmove(rb.raw, rb.raw + used, total - used)
        else:
            rbuf_grow(&rb.raw, &rb.raw_cap, total - used)
            memcpy(rb.raw, buf + used, total - used)
        rb.raw_len = total - used
    elif rb != NULL:
        rb.raw_len = 0
        if rb.msg_opcode == 0:
            # Nothing pending: give the memory back.
            rbuf_free(rb)
            sub.inp = NULL
    return 0


def websocket_frame(bytes payload not None, int opcode=WS_TEXT):
    """One unmasked, final server frame carrying payload."""
    cdef char head[10]
    cdef size_t n = <size_t>PyBytes_GET_SIZE(payload)
    cdef size_t h = ws_frame_header(head, <uint8_t>(0x80 | opcode), n)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>(h + n))
    cdef char *p = PyBytes_AS_STRING(out)
    memcpy(p, head, h)
    memcpy(p + h, PyBytes_AS_STRING(payload), n)
    return out
