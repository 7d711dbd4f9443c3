# The front door: accepting connections, and the common subscriber request
# answered without Python.
#
# Most connections a push server takes are the same request: a browser
# asking for one channel's stream, `GET /sub/<channel> HTTP/1.1` with a few
# headers that change nothing. Going through asyncio (a transport, a
# protocol object, llhttp callbacks, routing, the handshake) and then
# handing the socket to the hub costs ~80 us of CPU; the kernel's own part
# (accept, read, write) is ~10. So the door accepts on the listening
# sockets itself, reads the request head, and when the request is one the
# server configured it to answer (see fastpush.http.door, which proves the
# Python path would give the same bytes), attaches the socket to its
# channel right here. Anything else - a publisher, a backlog, a WebSocket,
# a head in two reads - goes to Python with the bytes already read, and is
# served exactly as before.


# Character classes of the request head, one bit each.
cdef enum:
    C_ID = 1        # a channel id the door serves: [A-Za-z0-9_:-]
    C_QUERY = 2     # a query string char (RFC 3986 query, no '#')
    C_TOKEN = 4     # RFC 9110 token: header names
    C_VALUE = 8     # header value: visible ASCII, space, tab

cdef unsigned char _CLASS[256]


cdef void _init_classes() noexcept:
    cdef int c
    cdef bytes ident = b"_:-"
    cdef bytes query = b"-._~!$&'()*+,;=:@/?%"
    cdef bytes token = b"!#$%&'*+-.^_`|~"
    for c in range(256):
        _CLASS[c] = 0
    for c in range(0x20, 0x7f):
        _CLASS[c] |= C_VALUE
    _CLASS[9] |= C_VALUE
    for c in range(256):
        if (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122):
            _CLASS[c] |= C_ID | C_QUERY | C_TOKEN
    for c in ident:
        _CLASS[c] |= C_ID
    for c in query:
        _CLASS[c] |= C_QUERY
    for c in token:
        _CLASS[c] |= C_TOKEN


_init_classes()


cdef inline bint _is(const unsigned char *p, size_t n, const char *lower) noexcept:
    """p[:n] equals the lowercase NUL-terminated name, ignoring case."""
    cdef size_t i
    for i in range(n):
        if lower[i] == 0 or (p[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return lower[n] == 0


cdef inline bint _changes_answer(const unsigned char *name, size_t n) noexcept:
    """Headers that make the Python path answer differently: a body, another
    mode, a resume point, an upgrade. With one of them the door steps aside."""
    return (_is(name, n, "content-length") or _is(name, n, "transfer-encoding")
            or _is(name, n, "expect") or _is(name, n, "upgrade")
            or _is(name, n, "x-nginx-pushstream-mode")
            or _is(name, n, "if-modified-since") or _is(name, n, "if-none-match")
            or _is(name, n, "last-event-id"))


@cython.final
cdef class DoorRoute:
    """A subscriber location the door answers itself.

    prefix: the literal start of the path, up to the channel id; form: the
    hub's form index; ttl: subscriber_connection_ttl in seconds (0: none);
    head: the response head before its Date line; tail: the rest of the
    head and the location's header template.
    """

    def __init__(self, bytes prefix not None, int form, double ttl,
                 bytes head not None, bytes tail not None):
        if not prefix.startswith(b"/") or not prefix.endswith(b"/"):
            raise ValueError("a route prefix starts and ends with '/'")
        if len(head) + len(tail) + DOOR_DATE_MAX > DOOR_BUFFER_SIZE:
            raise ValueError("response head too large for the door")
        self.prefix = prefix
        self.form = form
        self.ttl = ttl
        self.head = head
        self.tail = tail

    def __repr__(self):
        return f"<DoorRoute {self.prefix!r} form={self.form}>"


@cython.final
cdef class Door:
    """Accepts on listening sockets; serves plain subscribers, hands the rest on.

    adopt(fd, data, served, unsent): a connection for the Python path, with
    the bytes read and not handled, the requests already served on it and
    the answers not yet written.
    flush(): deliver the messages published and not yet delivered; called
    before a batch's first subscriber attaches (so it sees them either in
    its backlog or live, never both) and after a read's publishes.
    subscribed(channels): after a batch, one entry per subscriber attached.
    date(): the Date header line, asked once a second.
    publish(channel_id, text, store): a publish the door parsed; the
    Channel, or None when the Python path must answer it.
    ledger, pending: the registry's Ledger and the server's queue of
    messages to deliver (channel -> [messages]); with them the door
    stamps and queues a publish to an existing channel itself, and calls
    publish() only for the rest (a new channel, the events channel, one
    with long-polling waiters).
    create(channel_id): a subscriber asks for a channel that does not
    exist: the new Channel, or None when the Python path must answer (a
    limit refuses it). Without it such a subscriber goes to Python.
    """

    def __cinit__(self):
        self.buf = NULL
        self.out.data = NULL

    def __init__(self, Hub hub not None, dict channels not None, object adopt,
                 object flush, object subscribed, object date, object publish,
                 Ledger ledger=None, dict pending=None, object create=None):
        self.hub = hub
        self.create = create
        self.ledger = ledger
        self.pending = pending
        self.loop = hub.loop
        self.channels = channels
        self.adopt = adopt
        self.flush = flush
        self.subscribed = subscribed
        self.date = date
        self.publish = publish
        self.sequence = None
        self.refuse = None
        self.answering = []
        self.date_line = b""
        self.date_second = -1
        self.routes = []
        self.fds = []
        self.header_limit = 0
        self.max_id_length = -1
        self.wildcard_prefix = None
        self.events_id = None
        self.pub_routes = []
        self.publishers = {}
        self.keepalive_requests = 0
        self.out.len = 0
        self.out.cap = 0
        self.buf = <char *>malloc(DOOR_BUFFER_SIZE)
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.buf)
        free(self.out.data)

    def set_routes(self, list routes not None, Py_ssize_t header_limit,
                   Py_ssize_t max_id_length=-1, bytes wildcard_prefix=None,
                   bytes events_id=None):
        """What the door serves from now on; [] hands every connection on.

        Routes are tried in order and the first whose prefix matches
        decides. A request head longer than header_limit, a channel id
        longer than max_id_length (-1: no limit), starting with the
        wildcard prefix or naming the events channel goes to Python.
        """
        for r in routes:
            if not isinstance(r, DoorRoute):
                raise TypeError("routes must be DoorRoute objects")
        self.routes = list(routes)
        self.header_limit = min(header_limit, DOOR_BUFFER_SIZE)
        self.max_id_length = max_id_length
        self.wildcard_prefix = wildcard_prefix or None
        self.events_id = events_id or None

    def set_publisher_routes(self, list routes not None,
                             Py_ssize_t keepalive_requests, bint gzip=False,
                             object sequence=None, object refuse=None):
        """The publisher locations the door answers; [] for none.

        Call after set_routes() (the head limit and channel id checks are
        shared). keepalive_requests: requests a connection may make; gzip:
        whether a response may be compressed (then a request that accepts
        gzip goes to Python). Connections already open go to the Python
        path at their next request.

        With several workers a publish waits for the sequencer: then
        sequence(channel_id, text, store, done) sends it there and returns
        True, and done(status, explain, {channel_id: subscribers}) is
        called with its answer, in the order they were sent; False (a limit
        refuses the channel here) hands the request to the Python path.
        refuse(status, explain) gives the answer to a status other than 200. Call send_answers() after
        the answers of a read from the sequencer came in.
        """
        for r in routes:
            if not isinstance(r, PubRoute):
                raise TypeError("routes must be PubRoute objects")
        if (sequence is None) != (refuse is None):
            raise ValueError("sequence and refuse go together")
        self.pub_routes = list(routes)
        self.keepalive_requests = keepalive_requests
        self.gzip = gzip
        self.sequence = sequence
        self.refuse = refuse
        self.pub_gen += 1

    def send_answers(self):
        """Send the sequencer's answers that came in to their publishers:
        once per read of the bus, so a pipelined batch goes back in one
        send()."""
        cdef Publisher p
        if not self.answering:
            return
        todo, self.answering = self.answering, []
        for p in todo:
            p.queued = False
            if self.publishers.get(p.fd) is not p:
                continue  # closed or handed on while its answer came
            try:
                p._settle()
            except Exception as exc:
                self.loop.call_exception_handler({
                    "message": "fastpush: front door answer failed",
                    "exception": exc,
                })

    def listen(self, int fd):
        """Accept on the non-blocking listening socket fd (the caller keeps it)."""
        cdef int one = 1
        # Accepted sockets inherit TCP_NODELAY from the listening one (as
        # asyncio sets it on every TCP transport: messages are small and
        # must not wait for the previous one's ACK), one call for all.
        system.setsockopt(fd, system.IPPROTO_TCP, system.TCP_NODELAY, &one, sizeof(one))
        self.fds.append(fd)
        if not self.paused:
            self.loop.add_reader(fd, self._on_ready, fd)

    def close(self):
        """Stop accepting; the listening sockets stay open (the caller's)."""
        cdef int fd
        if not self.paused:
            for fd in self.fds:
                self.loop.remove_reader(fd)
        self.fds = []

    def counters(self):
        return {"door_served": self.served, "door_handed_on": self.handed_on,
                "door_published": self.published}

    def sweep(self, double idle):
        """Close publisher connections silent for more than idle seconds."""
        cdef long now = <long>system.time(NULL)
        cdef Publisher p
        for p in list(self.publishers.values()):
            if now - p.seen > idle:
                p.close()

    def drop_publishers(self):
        """Close every publisher connection (shutting down)."""
        cdef Publisher p
        for p in list(self.publishers.values()):
            p.close()

    # -- accepting -------------------------------------------------------------

    def _on_ready(self, int lfd):
        cdef int fd, err, accepted = 0
        cdef list subscribed = None
        cdef object ch
        self.flushed = False
        # Bounded like asyncio's backlog loop, so a connection storm cannot
        # starve the subscribers' epoll set; level-triggered, we are called
        # again for the rest.
        while accepted < DOOR_ACCEPT_BATCH:
            fd = system.accept4(lfd, NULL, NULL,
                                system.SOCK_NONBLOCK | system.SOCK_CLOEXEC)
            if fd < 0:
                err = system.errno
                if err == system.ECONNABORTED:
                    continue
                if not system.FP_WOULD_BLOCK(err):
                    self._out_of_resources(err)
                break
            accepted += 1
            try:
                ch = self._serve(fd)
            except Exception as exc:
                self.loop.call_exception_handler({
                    "message": "fastpush: front door failed on a connection",
                    "exception": exc,
                })
                continue
            if ch is not None:
                if subscribed is None:
                    subscribed = []
                subscribed.append(ch)
        if subscribed is not None:
            self.subscribed(subscribed)

    cdef void _out_of_resources(self, int err) noexcept:
        # EMFILE and friends: the listening socket stays readable, so
        # accepting again at once would spin. Pause a second, as asyncio.
        cdef int fd
        try:
            self.loop.call_exception_handler({
                "message": "fastpush: accept() failed, pausing for 1 s",
                "exception": OSError(err, strerror(err).decode()),
            })
            if not self.paused:
                self.paused = True
                for fd in self.fds:
                    self.loop.remove_reader(fd)
                self.loop.call_later(DOOR_ACCEPT_RETRY, self._resume)
        except Exception:
            pass

    def _resume(self):
        cdef int fd
        if self.paused:
            self.paused = False
            for fd in self.fds:
                self.loop.add_reader(fd, self._on_ready, fd)

    cdef object _serve(self, int fd):
        """Serve fd if it is a plain subscriber: its Channel, else None."""
        cdef ssize_t n = system.recv(fd, self.buf, DOOR_BUFFER_SIZE, 0)
        cdef size_t start = 0, length = 0, size
        cdef DoorRoute route
        cdef PyObject *found
        cdef object ch, cid
        if n <= 0:
            if n < 0 and system.FP_WOULD_BLOCK(system.errno):
                # Connected but silent so far (TCP_DEFER_ACCEPT timed out,
                # or it is not supported): Python waits for the request.
                self._hand_on(fd, b"")
            else:
                system.close(fd)
            return None
        route = self._match(<size_t>n, &start, &length)
        if route is None:
            if self.pub_routes and memcmp(self.buf, b"POST ", 5) == 0:
                self._publisher(fd, <size_t>n)
            else:
                self._hand_on(fd, PyBytes_FromStringAndSize(self.buf, n))
            return None
        if not self.flushed:
            self.flushed = True
            if self.pending is None or self.pending:
                self.flush()
        cid = PyUnicode_DecodeASCII(self.buf + start, length, NULL)
        found = PyDict_GetItem(self.channels, cid)
        if found != NULL and type(<object>found) is Channel:
            ch = <object>found
        else:
            # A new channel: the registry creates it with its own checks
            # and limits (one Python call, not a Python request for every
            # subscriber that arrives before it exists). A refusal, or a
            # failure, is answered by the Python path, which makes the
            # same call and has the error answers.
            ch = None
            if self.create is not None:
                try:
                    ch = self.create(cid)
                except Exception:
                    ch = None
            if type(ch) is not Channel:
                self._hand_on(fd, PyBytes_FromStringAndSize(self.buf, n))
                return None
        self._date()
        # The request is in `ch` now; the buffer takes the response.
        size = 0
        for part in (route.head, self.date_line, route.tail):
            memcpy(self.buf + size, PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part))
            size += <size_t>PyBytes_GET_SIZE(part)
        self.hub._attach(fd, [ch], route.form, SUB_STREAM, False, route.ttl,
                         self.buf, size)
        self.served += 1
        return ch

    cdef bytes _date(self):
        """The Date line of a response now."""
        cdef long now = <long>system.time(NULL)
        if now != self.date_second:
            line = self.date()
            if not isinstance(line, bytes) or len(line) > DOOR_DATE_MAX:
                raise ValueError("date() must give a bytes Date line")
            self.date_line = line
            self.date_second = now
        return self.date_line

    cdef int _publisher(self, int fd, size_t n) except -1:
        """A connection that starts with POST: the door's if its first
        request is a publish it serves (or may still be), else Python's."""
        cdef PubReq req
        cdef Publisher p
        if _pub_parse(self, <const unsigned char *>self.buf, n, &req) == PUB_NOT_OURS:
            return self._hand_on(fd, PyBytes_FromStringAndSize(self.buf, n))
        p = Publisher(self, fd)
        p.feed(self.buf, n)
        self.publishers[fd] = p
        try:
            self.loop.add_reader(fd, p._on_read)
        except BaseException:
            del self.publishers[fd]
            system.close(fd)
            raise
        return p.serve(False)

    cdef int _hand_on(self, int fd, bytes data) except -1:
        self.handed_on += 1
        try:
            self.adopt(fd, data, 0, b"")
        except BaseException:
            system.close(fd)
            raise
        return 0

    cdef DoorRoute _match(self, size_t n, size_t *start, size_t *length):
        """The route for the request head in buf[:n], or None.

        Only a whole head with nothing after it, `GET <prefix><id>[?query]
        HTTP/1.1`, and headers that change nothing in the answer.
        """
        cdef const unsigned char *b = <const unsigned char *>self.buf
        cdef size_t i, j, name, name_len, value, value_len, headers = 0
        cdef Py_ssize_t k, plen
        cdef DoorRoute route = None, r
        if not self.routes or n > <size_t>self.header_limit or n < 20:
            return None
        if memcmp(b + n - 4, b"\r\n\r\n", 4) != 0 or memcmp(b, b"GET /", 5) != 0:
            return None
        for k in range(len(self.routes)):
            r = <DoorRoute>PyList_GET_ITEM(self.routes, k)
            plen = PyBytes_GET_SIZE(r.prefix)
            if <size_t>plen + 4 < n and memcmp(b + 4, PyBytes_AS_STRING(r.prefix),
                                               plen) == 0:
                route = r
                break
        if route is None:
            return None
        i = 4 + <size_t>plen
        j = i
        while _CLASS[b[j]] & C_ID:
            j += 1
        if not _plain_id(self, b + i, j - i, False):
            return None
        start[0] = i
        length[0] = j - i
        if b[j] == b'?':
            j += 1
            while _CLASS[b[j]] & C_QUERY:
                j += 1
        # b ends with CRLF CRLF, so these reads stay inside it.
        if j + 11 > n or memcmp(b + j, b" HTTP/1.1\r\n", 11) != 0:
            return None
        i = j + 11
        while i < n - 2:
            i = _header(b, i, &name, &name_len, &value, &value_len)
            if i == 0:
                return None
            headers += 1
            if _changes_answer(b + name, name_len):
                return None
            if _is(b + name, name_len, "connection") and not _is(
                    b + value, value_len, "keep-alive"):
                return None
        # The Python path counts a header's name and value plus 4 against
        # the limit; the head's own length plus one per header bounds that.
        if n + headers > <size_t>self.header_limit:
            return None
        return route


cdef inline bint _starts(const unsigned char *p, size_t n, bytes prefix) noexcept:
    cdef Py_ssize_t m = PyBytes_GET_SIZE(prefix)
    return <size_t>m <= n and memcmp(p, PyBytes_AS_STRING(prefix), m) == 0


cdef inline bint _same(const unsigned char *p, size_t n, bytes other) noexcept:
    return <size_t>PyBytes_GET_SIZE(other) == n and memcmp(
        p, PyBytes_AS_STRING(other), n) == 0


cdef size_t _header(const unsigned char *b, size_t i, size_t *name, size_t *name_len,
                    size_t *value, size_t *value_len) noexcept:
    """Read `name: value CRLF` at b[i], in a head that ends in CRLF CRLF.

    Returns the index after it, 0 for anything else (a folded line, a bad
    character); the value is without the spaces around it.
    """
    cdef size_t end
    name[0] = i
    while _CLASS[b[i]] & C_TOKEN:
        i += 1
    name_len[0] = i - name[0]
    if name_len[0] == 0 or b[i] != b':':
        return 0
    i += 1
    while b[i] == b' ' or b[i] == b'\t':
        i += 1
    value[0] = i
    while _CLASS[b[i]] & C_VALUE:
        i += 1
    if b[i] != b'\r' or b[i + 1] != b'\n':
        return 0
    end = i
    while end > value[0] and (b[end - 1] == b' ' or b[end - 1] == b'\t'):
        end -= 1
    value_len[0] = end - value[0]
    return i + 2


cdef bint _plain_id(Door door, const unsigned char *p, size_t n, bint wildcard_ok) noexcept:
    """A channel id the door may act on: [A-Za-z0-9_:-]+ within the length
    limit, not ALL, not the events channel (and, for a subscriber, not a
    wildcard channel). The Python path has its own answer for the others."""
    cdef size_t i
    if n == 0:
        return False
    for i in range(n):
        if not _CLASS[p[i]] & C_ID:
            return False
    if door.max_id_length >= 0 and n > <size_t>door.max_id_length:
        return False
    if (not wildcard_ok and door.wildcard_prefix is not None
            and _starts(p, n, door.wildcard_prefix)):
        return False
    if door.events_id is not None and _same(p, n, door.events_id):
        return False
    return not (n == 3 and memcmp(p, b"ALL", 3) == 0)
