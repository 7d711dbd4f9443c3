# Message templates rendered in C.
#
# push-stream's message_template (`~text~` by default, or something like
# `{"id": ~id~, "channel": "~channel~", "text": "~text~"}`) is split once
# at config time (fastpush.render.Template) and applied here to every
# message, then framed for the subscriber's form: an HTTP/1.1 chunk, a
# WebSocket frame, or nothing. Formatting a message was half the Python
# work of a publish; here it is one C call, and the fan-out
# (Channel.deliver_messages) calls it without entering Python at all.


cdef enum:
    # The template's tokens, as fastpush.render._TOKEN names them.
    T_TEXT = 0
    T_ID = 1
    T_CHANNEL = 2
    T_TIME = 3
    T_TAG = 4
    T_SIZE = 5
    T_EVENT_ID = 6
    T_EVENT_TYPE = 7

cdef dict _TOKENS = {
    b"text": T_TEXT, b"id": T_ID, b"channel": T_CHANNEL, b"time": T_TIME,
    b"tag": T_TAG, b"size": T_SIZE, b"event-id": T_EVENT_ID,
    b"event-type": T_EVENT_TYPE,
}

# How a rendered message is framed (Plan.framing; FRAME_* in Python).
cdef enum:
    FR_NONE = 0          # as is: HTTP/1.0 streaming, a piece of an EventSource event
    FR_CHUNK = 1         # one HTTP/1.1 chunk
    FR_WEBSOCKET = 2     # one WebSocket text frame


@cython.final
cdef class Plan:
    """A compiled message template and the framing of one form.

    parts is the template split around its tokens (literal, token name,
    literal, ..., literal), as re.split with one group gives it; date
    turns a message's time into ~time~'s text.
    """

    def __cinit__(self):
        self.codes = NULL

    def __init__(self, list parts not None, int framing, object date not None):
        cdef Py_ssize_t i
        if len(parts) % 2 != 1 or not all(isinstance(p, bytes) for p in parts):
            raise ValueError("parts alternate literals and tokens, all bytes")
        if framing not in (FR_NONE, FR_CHUNK, FR_WEBSOCKET):
            raise ValueError(f"unknown framing {framing}")
        self.ntokens = len(parts) // 2
        self.codes = <int *>malloc((self.ntokens or 1) * sizeof(int))
        if self.codes == NULL:
            raise MemoryError()
        for i in range(self.ntokens):
            code = _TOKENS.get(parts[2 * i + 1])
            if code is None:
                raise ValueError(f"unknown token {parts[2 * i + 1]!r}")
            self.codes[i] = code
        self.literals = tuple(parts[0::2])
        self.text_only = parts == [b"", b"text", b""]
        self.framing = framing
        self.date = date

    def __dealloc__(self):
        free(self.codes)

    cpdef bytes apply(self, Message msg, object text=None):
        """The message through the template (text replaces its text)."""
        cdef bytes body = msg.text if text is None else text
        cdef list out
        cdef Py_ssize_t i
        cdef bytes lit
        cdef int code
        if self.text_only:
            return body
        out = []
        for i in range(self.ntokens + 1):
            lit = <bytes>PyTuple_GET_ITEM(self.literals, i)
            if PyBytes_GET_SIZE(lit):
                out.append(lit)
            if i == self.ntokens:
                break
            code = self.codes[i]
            if code == T_TEXT:
                out.append(body)
            elif code == T_ID:
                out.append(b"%d" % msg.id)
            elif code == T_CHANNEL:
                out.append(PyUnicode_AsUTF8String(msg.channel))
            elif code == T_TIME:
                out.append(self.date(msg.time))
            elif code == T_TAG:
                out.append(b"%d" % msg.tag)
            elif code == T_SIZE:
                out.append(b"%d" % PyBytes_GET_SIZE(body))
            elif code == T_EVENT_ID:
                if msg.event_id:
                    out.append(msg.event_id)
            elif msg.event_type:
                out.append(msg.event_type)
        return b"".join(out)

    cpdef bytes render(self, Message msg):
        """What a subscriber of this form receives for msg."""
        return self.frame(self.apply(msg, None))

    cpdef bytes frame(self, bytes data):
        """data framed for this form; nothing for no data (an empty chunk
        would end the response)."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef char head[24]
        cdef size_t h
        cdef bytes out
        cdef char *p
        if self.framing == FR_NONE:
            return data
        if n == 0:
            return b""
        if self.framing == FR_CHUNK:
            h = <size_t>format_uint(head, <unsigned long long>n, 16)
            head[h] = b"\r"
            head[h + 1] = b"\n"
            h += 2
            out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>h + n + 2)
            p = PyBytes_AS_STRING(out)
            memcpy(p, head, h)
            memcpy(p + h, PyBytes_AS_STRING(data), n)
            memcpy(p + h + n, b"\r\n", 2)
            return out
        h = ws_frame_header(head, <uint8_t>(0x80 | WS_TEXT), <size_t>n)
        out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>h + n)
        p = PyBytes_AS_STRING(out)
        memcpy(p, head, h)
        memcpy(p + h, PyBytes_AS_STRING(data), n)
        return out
