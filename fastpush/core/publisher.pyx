# The front door's publisher: a keep-alive connection of publish requests
# parsed and answered without Python's HTTP layer.
#
# A site's publisher (the glue, a Django hook, a load test) usually keeps
# one connection open and sends `POST /pub?id=<channel>` after `POST
# /pub?id=<channel>`, often pipelined. Through asyncio each costs a
# transport callback, llhttp callbacks, a Request, routing, variable
# expansion and the channel-info answer, all in Python: ~20 us, most of a
# publish. Here the requests are parsed in C, the message goes through one
# Python call (the registry's publish: stamping, store, fan-out queue), and
# the answers of a whole read go back in one send().
#
# The connection stays here while every request is one the door serves
# (see fastpush.http.door for which locations qualify, and _pub_parse for
# which requests). At the first one it does not, or when the kernel will
# not take an answer at once, the connection goes to the Python path with
# the bytes not yet handled and the answers not yet sent, and stays there.
#
# With several workers a publish waits for the sequencer (fastpush.sequencer):
# each request goes to it through door.sequence (one Python call that writes
# the bus frame) and its answer is written when the sequencer's ACK comes
# back. The bus keeps order, so the answers of a pipelined batch come back
# in request order and go out together (Door.send_answers, once per read of
# the bus). A request the door does not serve, or an answer the kernel will
# not take at once, stops the reading; the connection goes to the Python
# path when every request before it is answered.


@cython.final
cdef class PubRoute:
    """A publisher location the door answers itself.

    path: the exact path (`/pub`); arg: the query argument naming the
    channel (`id` for `$arg_id`); store: store_messages; body_limit:
    client_max_body_size; head / mid / post: the answer's head before the
    Date line, from it to the Content-Length digits, and after them; info:
    the channel-info body in five pieces around its four fields, or None
    when the location answers with no body.
    """

    def __init__(self, bytes path not None, bytes arg not None, bint store,
                 Py_ssize_t body_limit, bytes head not None, bytes mid not None,
                 bytes post not None, tuple info=None):
        if not path.startswith(b"/") or b"?" in path:
            raise ValueError("a publisher path starts with '/' and has no query")
        if not arg or b"&" in arg or b"=" in arg:
            raise ValueError("bad query argument name")
        if info is not None and (len(info) != 5 or not all(
                isinstance(p, bytes) for p in info)):
            raise ValueError("info is five bytes pieces")
        self.path = path
        self.arg = arg
        self.store = store
        self.body_limit = body_limit
        self.head = head
        self.mid = mid
        self.post = post
        self.info = info

    def __repr__(self):
        return f"<PubRoute {self.path!r} ?{self.arg.decode()}=>"


cdef enum:
    # Publishes a connection may have waiting for the sequencer before the
    # door stops reading it (as the Python path, HttpProtocol): a client
    # pipelining faster than the sequencer answers is slowed down by TCP,
    # not by our memory.
    PUB_OWED_MAX = 1024


cdef enum:
    PUB_NOT_OURS = -1     # hand the connection on
    PUB_MORE = 0          # incomplete: wait for more bytes
    PUB_READY = 1         # a whole request the door serves


cdef inline bint _pub_refuses(const unsigned char *name, size_t n, bint gzip) noexcept:
    """Headers after which the Python path answers differently."""
    return (_is(name, n, "transfer-encoding") or _is(name, n, "expect")
            or _is(name, n, "upgrade") or _is(name, n, "event-id")
            or _is(name, n, "event-type")
            or (gzip and _is(name, n, "accept-encoding")))


cdef int _pub_parse(Door door, const unsigned char *b, size_t n, PubReq *req) except -2:
    """Look at the request starting at b[0] (n bytes so far).

    PUB_READY: `POST <path>?...<arg>=<id>... HTTP/1.1`, a plain channel id,
    a Content-Length body within the location's limit, and headers that
    change nothing in the answer; req says where its parts are.
    """
    cdef size_t i, j, k, end, limit, name, name_len, value, value_len, headers = 0
    cdef size_t arg_len, seg, length = 0
    cdef Py_ssize_t r, plen
    cdef PubRoute route = None, p
    cdef bint have_length = False
    cdef const unsigned char *hit
    if n < 5:
        return PUB_MORE if memcmp(b, b"POST ", n) == 0 else PUB_NOT_OURS
    if memcmp(b, b"POST /", 6 if n >= 6 else 5) != 0:
        return PUB_NOT_OURS
    # The head's end, within the limit the Python path enforces.
    limit = min(n, <size_t>door.header_limit)
    hit = <const unsigned char *>memmem(b, limit, b"\r\n\r\n", 4)
    if hit == NULL:
        return PUB_MORE if n < <size_t>door.header_limit else PUB_NOT_OURS
    end = <size_t>(hit - b) + 4
    for r in range(len(door.pub_routes)):
        p = <PubRoute>PyList_GET_ITEM(door.pub_routes, r)
        plen = PyBytes_GET_SIZE(p.path)
        if (<size_t>plen + 6 < end and memcmp(b + 5, PyBytes_AS_STRING(p.path), plen) == 0
                and b[5 + plen] == b'?'):
            route = p
            req.route = r
            break
    if route is None:
        return PUB_NOT_OURS
    # The query, then the first `arg=` in it, as nginx's $arg_<name>.
    i = 5 + <size_t>plen + 1
    j = i
    while _CLASS[b[j]] & C_QUERY:
        j += 1
    if j + 11 > end or memcmp(b + j, b" HTTP/1.1\r\n", 11) != 0:
        return PUB_NOT_OURS
    arg_len = <size_t>PyBytes_GET_SIZE(route.arg)
    req.id_start = 0
    req.id_len = 0
    k = i
    while k < j:
        # One `key[=value]` segment, k to seg; the first with our key counts.
        seg = k
        while seg < j and b[seg] != b'&':
            seg += 1
        if (seg - k >= arg_len and memcmp(b + k, PyBytes_AS_STRING(route.arg), arg_len) == 0
                and (seg - k == arg_len or b[k + arg_len] == b'=')):
            if seg - k > arg_len:
                req.id_start = k + arg_len + 1
                req.id_len = seg - req.id_start
            break  # `id` alone: an empty id, a 400 from Python
        k = seg + 1
    if not _plain_id(door, b + req.id_start, req.id_len, True):
        return PUB_NOT_OURS
    i = j + 11
    while i < end - 2:
        i = _header(b, i, &name, &name_len, &value, &value_len)
        if i == 0:
            return PUB_NOT_OURS
        headers += 1
        if _pub_refuses(b + name, name_len, door.gzip):
            return PUB_NOT_OURS
        if _is(b + name, name_len, "connection"):
            if not _is(b + value, value_len, "keep-alive"):
                return PUB_NOT_OURS
        elif _is(b + name, name_len, "accept"):
            # Another format than JSON may be asked for.
            if value_len != 3 or memcmp(b + value, b"*/*", 3) != 0:
                return PUB_NOT_OURS
        elif _is(b + name, name_len, "content-length"):
            # One, plain digits, no leading zero: nothing llhttp reads otherwise.
            if have_length or value_len == 0 or value_len > 9 or b[value] == c'0':
                return PUB_NOT_OURS
            have_length = True
            for k in range(value, value + value_len):
                if b[k] < c'0' or b[k] > c'9':
                    return PUB_NOT_OURS
                length = length * 10 + <size_t>(b[k] - c'0')
    # An empty body is a 400, a large one a 413: the Python path says so.
    if not have_length or length > <size_t>route.body_limit:
        return PUB_NOT_OURS
    if end + headers > <size_t>door.header_limit:
        return PUB_NOT_OURS
    if end + length > n:
        return PUB_MORE
    req.body_start = end
    req.body_len = length
    req.end = end + length
    return PUB_READY


@cython.final
cdef class Publisher:
    """One publisher connection the door serves; see the top of this file."""

    def __cinit__(self):
        self.buf = NULL
        self.ans.data = NULL

    def __init__(self, Door door not None, int fd):
        self.door = door
        self.fd = fd
        self.len = 0
        self.cap = 0
        self.served = 0
        self.gen = door.pub_gen
        self.seen = <long>system.time(NULL)
        self.waiting = []
        self.head = 0
        self.ans.len = 0
        self.ans.cap = 0

    def __dealloc__(self):
        free(self.buf)
        free(self.ans.data)

    cdef int feed(self, const char *data, size_t n) except -1:
        """Take bytes the door read already."""
        rbuf_grow(&self.buf, &self.cap, self.len + n)
        memcpy(self.buf + self.len, data, n)
        self.len += n
        return 0

    def _on_read(self):
        cdef ssize_t n
        if self.door.publishers.get(self.fd) is not self or self.held or self.paused:
            return  # handed on, closed or stopped within this iteration
        rbuf_grow(&self.buf, &self.cap, self.len + DOOR_BUFFER_SIZE)
        n = system.recv(self.fd, self.buf + self.len, self.cap - self.len, 0)
        if n < 0:
            if not system.FP_WOULD_BLOCK(system.errno):
                self.close()
            return
        self.seen = <long>system.time(NULL)
        if n == 0:
            # The peer is done: answer what it sent in full, then close.
            self.serve(True)
            return
        self.len += <size_t>n
        self.serve(False)

    cdef int _next(self, size_t pos, PubReq *req) except -2:
        """_pub_parse for the request at buf[pos:], or PUB_NOT_OURS where
        the Python path must answer whatever it is."""
        cdef Door door = self.door
        cdef int r
        if self.gen != door.pub_gen:
            return PUB_NOT_OURS  # reconfigured: the Python path routes anew
        r = _pub_parse(door, <const unsigned char *>self.buf + pos, self.len - pos, req)
        if r == PUB_READY and self.served + 1 >= door.keepalive_requests:
            # The last request a connection may make says Connection:
            # close; the Python path writes that, counting from here.
            return PUB_NOT_OURS
        return r

    cdef int serve(self, bint eof) except -1:
        """Answer every whole request in the buffer."""
        cdef Door door = self.door
        cdef size_t pos = 0, done
        cdef PubRoute route = None
        cdef PubReq req
        cdef int r
        cdef object ch
        if door.sequence is not None:
            return self._serve_sequenced(eof)
        door.out.len = 0
        while pos < self.len:
            r = self._next(pos, &req)
            if r == PUB_MORE:
                break
            if r == PUB_NOT_OURS:
                return self._hand_on(pos)
            route = <PubRoute>PyList_GET_ITEM(door.pub_routes, req.route)
            try:
                ch = _pub_message(
                    door,
                    PyUnicode_DecodeASCII(self.buf + pos + req.id_start, req.id_len, NULL),
                    PyBytes_FromStringAndSize(self.buf + pos + req.body_start, req.body_len),
                    route.store)
            except Exception as exc:
                door.loop.call_exception_handler({
                    "message": "fastpush: front door publish failed",
                    "exception": exc,
                })
                self._send_out()
                self.close()
                return 0
            if ch is None:
                # Refused (a channel limit, a full store): the Python path
                # makes the same request again and says why.
                return self._hand_on(pos)
            _pub_answer(door, &door.out, route, (<Channel>ch).id,
                        (<Channel>ch).published_messages, (<Channel>ch).store_len,
                        _subscribers(<Channel>ch))
            self.served += 1
            door.published += 1
            pos += req.end
        if pos:
            memmove(self.buf, self.buf + pos, self.len - pos)
            self.len -= pos
            # Fan the messages out before answering: the subscribers'
            # writes then run before the publisher wakes up and competes
            # for the CPU with its next batch (as the bare C server does).
            try:
                if door.pending is None or _wakes_waiters(door.pending):
                    door.flush()  # the server wakes long-polling waiters too
                else:
                    door.hub.deliver_queued(door.pending)
            except Exception as exc:
                # As a failed flush callback would be on the Python path:
                # reported; the answers still go out.
                door.loop.call_exception_handler({
                    "message": "fastpush: fan-out after a door publish failed",
                    "exception": exc,
                })
        done = self._send_out()
        if done < door.out.len:
            return self._hand_on(0, <ssize_t>done)
        if eof:
            self.close()
        return 0

    cdef int _serve_sequenced(self, bint eof) except -1:
        """serve() with several workers: send every whole request to the
        sequencer; the answers come through _acked()."""
        cdef Door door = self.door
        cdef size_t pos = 0
        cdef PubRoute route
        cdef PubReq req
        cdef int r
        cdef str cid
        cdef bytes text
        cdef object sent
        while pos < self.len:
            if len(self.waiting) - self.head >= PUB_OWED_MAX:
                self._stop_reading(False)  # _settle() goes on once answered
                break
            r = self._next(pos, &req)
            if r == PUB_MORE:
                break
            if r == PUB_NOT_OURS:
                self.handing = True
                break
            route = <PubRoute>PyList_GET_ITEM(door.pub_routes, req.route)
            cid = PyUnicode_DecodeASCII(self.buf + pos + req.id_start, req.id_len, NULL)
            text = PyBytes_FromStringAndSize(self.buf + pos + req.body_start, req.body_len)
            # Waiting before the call: a bus that is gone answers at once.
            self.waiting.append((route, cid))
            try:
                sent = door.sequence(cid, text, route.store, self._acked)
            except Exception as exc:
                door.loop.call_exception_handler({
                    "message": "fastpush: front door publish failed",
                    "exception": exc,
                })
                self.close()
                return 0
            if not sent:
                # Refused here (a channel limit): the Python path makes the
                # same request again and says why.
                self.waiting.pop()
                self.handing = True
                break
            self.served += 1
            pos += req.end
        if pos:
            memmove(self.buf, self.buf + pos, self.len - pos)
            self.len -= pos
        if eof:
            self.eof = True
        if self.handing or self.eof:
            self._stop_reading(True)
        return self._settle()

    def _acked(self, int status, explain, dict counts):
        """The sequencer's answer to the oldest request waiting (see
        WorkerBus.publish); it is sent with the others of its read."""
        cdef Door door = self.door
        cdef tuple waited = <tuple>self.waiting[self.head]
        cdef PubRoute route = <PubRoute>waited[0]
        cdef str cid = <str>waited[1]
        cdef PyObject *p
        cdef Channel ch
        cdef object subscribers
        cdef bytes refusal
        self.head += 1
        if self.head == len(self.waiting):
            self.waiting.clear()
            self.head = 0
        elif self.head >= PUB_OWED_MAX:
            # A client that keeps PUB_OWED_MAX in flight never empties it.
            del self.waiting[:self.head]
            self.head = 0
        if door.publishers.get(self.fd) is not self:
            return  # closed: the message went out all the same
        if status == 200:
            # The stamped message reached this worker's replica before its
            # ACK (one stream), so the channel's counts include it; the
            # subscribers are every worker's, from the sequencer.
            subscribers = counts.get(cid, 0)
            p = PyDict_GetItem(door.channels, cid)
            if p != NULL and type(<object>p) is Channel:
                ch = <Channel>p
                _pub_answer(door, &self.ans, route, cid, ch.published_messages,
                            ch.store_len, subscribers)
            else:  # deleted since
                _pub_answer(door, &self.ans, route, cid, 0, 0, subscribers)
            door.published += 1
        else:
            refusal = door.refuse(status, explain)
            rbuf_grow(&self.ans.data, &self.ans.cap,
                      self.ans.len + <size_t>PyBytes_GET_SIZE(refusal))
            _out_bytes(&self.ans, refusal)
        if not self.queued:
            self.queued = True
            door.answering.append(self)

    cdef int _settle(self) except -1:
        """Send the answers gathered; once nothing is waiting for the
        sequencer, hand a held connection on or close it."""
        cdef size_t done = _send_all(self.fd, self.ans.data, self.ans.len)
        if done:
            memmove(self.ans.data, self.ans.data + done, self.ans.len - done)
            self.ans.len -= done
        if self.ans.len:
            # The kernel is full (or the peer gone): asyncio's transport
            # buffers the rest and reads on once it is written.
            self.handing = True
            self._stop_reading(True)
        if self.head < len(self.waiting):
            return 0
        if self.handing:
            return self._hand_on(0)
        if self.paused:
            # Caught up: the requests read meanwhile, then read on.
            self.paused = False
            if not self.held:
                self.door.loop.add_reader(self.fd, self._on_read)
            if self.len:
                return self._serve_sequenced(self.eof)
        if self.eof:
            self.close()
        return 0

    cdef void _stop_reading(self, bint hold) noexcept:
        """Stop reading requests until the ones sent are answered; then the
        connection reads on (a pause) or is handed on or closed (hold)."""
        if not (self.held or self.paused):
            try:
                self.door.loop.remove_reader(self.fd)
            except Exception:
                pass
        if hold:
            self.held = True
        else:
            self.paused = True

    cdef size_t _send_out(self) noexcept:
        """Send the answers gathered in door.out; how many bytes went."""
        return _send_all(self.fd, self.door.out.data, self.door.out.len)

    cdef int _hand_on(self, size_t pos, ssize_t sent=-1) except -1:
        """Give the connection to the Python path: the unread requests from
        buf[pos:], and the answers from door.out[sent:] still to write
        (sent -1: not tried yet)."""
        cdef Door door = self.door
        cdef bytes unsent
        if sent < 0:
            sent = self._send_out()
        # With several workers the answers are in self.ans (door.out is
        # empty then); with one, in door.out.
        unsent = (PyBytes_FromStringAndSize(door.out.data + sent, door.out.len - sent)
                  + PyBytes_FromStringAndSize(self.ans.data, self.ans.len))
        door.out.len = 0
        self.ans.len = 0
        data = PyBytes_FromStringAndSize(self.buf + pos, self.len - pos)
        self._forget()
        door.handed_on += 1
        try:
            door.adopt(self.fd, data, self.served, unsent)
        except BaseException:
            system.close(self.fd)
            raise
        return 0

    cdef void _forget(self) noexcept:
        try:
            del self.door.publishers[self.fd]
            self.door.loop.remove_reader(self.fd)
        except Exception:
            pass

    def close(self):
        """Close the connection (idle, shut down, or the peer went away)."""
        if self.door.publishers.get(self.fd) is self:
            self._forget()
            system.close(self.fd)


cdef object _pub_message(Door door, str cid, bytes text, bint store):
    """Publish text on channel cid: the Channel, or None when refused.

    A channel that exists, with no long-polling waiter and not the events
    channel, is the common case: stamped by the ledger and queued for the
    flush after this read, as the server's deliver() would, in C. The rest
    goes through door.publish (Python).
    """
    cdef PyObject *p = NULL
    cdef Channel ch
    cdef Message msg
    cdef system.timespec now
    if door.ledger is not None:
        p = PyDict_GetItem(door.channels, cid)
    if p == NULL:
        return door.publish(cid, text, store)
    ch = <Channel>p
    if ch.for_events or ch.waiters:
        return door.publish(cid, text, store)
    system.clock_gettime(system.CLOCK_REALTIME, &now)
    msg = door.ledger.stamp(ch, text, None, None, store,
                            <double>now.tv_sec + <double>now.tv_nsec * 1e-9)
    if msg is None:
        return None  # the store is full
    if ch.nsubs:
        door.hub.queue(door.pending, ch, msg)
    return ch


cdef size_t _send_all(int fd, const char *data, size_t n) noexcept:
    """Send data[:n] as far as the kernel takes it now; how many bytes went."""
    cdef size_t done = 0
    cdef ssize_t sent
    while done < n:
        sent = system.send(fd, data + done, n - done, system.MSG_NOSIGNAL)
        if sent <= 0:
            if sent < 0 and system.errno == system.EINTR:
                continue
            break
        done += <size_t>sent
    return done


cdef bint _wakes_waiters(dict pending):
    """Whether a channel with long-polling waiters has messages queued."""
    for ch in pending:
        if (<Channel>ch).waiters:
            return True
    return False


cdef inline long long _subscribers(Channel ch):
    """Registry.subscribers(ch): the core's and the long-polling waiters."""
    if ch.waiters:
        return ch.nsubs + len(ch.waiters)
    return ch.nsubs


cdef int _pub_answer(Door door, OutBuf *out, PubRoute route, str cid,
                     long long published, long long stored,
                     long long subscribers) except -1:
    """Append the answer to a publish on channel cid to out, as the
    Python path writes it: channel information (info.single, JSON) or an
    empty 200."""
    cdef char fields[3][24]
    cdef int sizes[3]
    cdef char digits[24]
    cdef int ndigits, f
    cdef Py_ssize_t id_len = 0, body_len = 0
    cdef const char *id_ = NULL
    cdef bytes date = door._date()
    cdef bytes piece
    if route.info is not None:
        id_ = PyUnicode_AsUTF8AndSize(cid, &id_len)
        sizes[0] = format_uint(fields[0], <unsigned long long>published, 10)
        sizes[1] = format_uint(fields[1], <unsigned long long>stored, 10)
        sizes[2] = format_uint(fields[2], <unsigned long long>subscribers, 10)
        body_len = id_len + sizes[0] + sizes[1] + sizes[2]
        for piece in route.info:
            body_len += PyBytes_GET_SIZE(piece)
    ndigits = format_uint(digits, <unsigned long long>body_len, 10)
    rbuf_grow(&out.data, &out.cap, out.len + body_len + ndigits
              + PyBytes_GET_SIZE(route.head) + PyBytes_GET_SIZE(date)
              + PyBytes_GET_SIZE(route.mid) + PyBytes_GET_SIZE(route.post))
    _out_bytes(out, route.head)
    _out_bytes(out, date)
    _out_bytes(out, route.mid)
    _out(out, digits, ndigits)
    _out_bytes(out, route.post)
    if route.info is not None:
        _out_bytes(out, route.info[0])
        _out(out, id_, id_len)
        for f in range(3):
            _out_bytes(out, route.info[f + 1])
            _out(out, fields[f], sizes[f])
        _out_bytes(out, route.info[4])
    return 0


cdef inline void _out(OutBuf *out, const char *p, Py_ssize_t n) noexcept:
    """Append p[:n] to out, grown for it already."""
    memcpy(out.data + out.len, p, n)
    out.len += <size_t>n


cdef inline void _out_bytes(OutBuf *out, bytes b) noexcept:
    _out(out, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
