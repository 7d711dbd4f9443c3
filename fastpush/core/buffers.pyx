# Output and input buffers of a subscriber. Both exist only while needed:
# an idle subscriber whose kernel socket buffer has room owns none.


cdef inline int format_uint(char *out, unsigned long long v, unsigned int base) noexcept:
    """Write v in base 10 or 16 (lower case) to out (20 bytes at least);
    returns the length. snprintf's format parsing cost more than a
    publish's whole answer on the hot path."""
    cdef char tmp[24]
    cdef int n = 0, i
    while True:
        tmp[n] = b"0123456789abcdef"[v % base]
        n += 1
        v //= base
        if v == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef WBuf *wbuf_append(WBuf *buf, const char *data, size_t n) except NULL:
    """Append n bytes, compacting or growing the buffer; returns it (moved)."""
    cdef size_t pending, cap
    cdef WBuf *grown
    if buf == NULL:
        cap = WBUF_MIN
        while cap < n:
            cap <<= 1
        buf = <WBuf *>malloc(sizeof(WBuf) + cap)
        if buf == NULL:
            raise MemoryError()
        buf.pos = 0
        buf.len = 0
        buf.cap = cap
    pending = buf.len - buf.pos
    if buf.len + n > buf.cap:
        if buf.pos:
            # Slide the unsent tail to the front before growing.
            memmove(buf.data, buf.data + buf.pos, pending)
            buf.pos = 0
            buf.len = pending
        if pending + n > buf.cap:
            cap = buf.cap
            while cap < pending + n:
                cap <<= 1
            grown = <WBuf *>realloc(buf, sizeof(WBuf) + cap)
            if grown == NULL:
                raise MemoryError()
            buf = grown
            buf.cap = cap
    memcpy(buf.data + buf.len, data, n)
    buf.len += n
    return buf


cdef inline size_t wbuf_pending(WBuf *buf) noexcept nogil:
    return 0 if buf == NULL else buf.len - buf.pos


cdef int rbuf_grow(char **ptr, size_t *cap, size_t need) except -1:
    cdef size_t c = cap[0] if cap[0] else 256
    cdef char *p
    while c < need:
        c <<= 1
    if c != cap[0]:
        p = <char *>realloc(ptr[0], c)
        if p == NULL:
            raise MemoryError()
        ptr[0] = p
        cap[0] = c
    return 0


cdef void rbuf_free(RBuf *rb) noexcept nogil:
    if rb != NULL:
        free(rb.raw)
        free(rb.msg)
        free(rb)

