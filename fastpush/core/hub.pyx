@cython.final
cdef class Hub:
    """Owns the subscriber sockets of one worker and their epoll set."""

    def __cinit__(self):
        self.epfd = -1
        self.subs = NULL
        self.dead = NULL
        self.events = NULL
        self.rbuf = NULL
        self.form_ws_limit = NULL
        self.form_ws_limit_len = 0

    def __init__(self, object loop, size_t output_limit=262144,
                 size_t ws_max_message=1048576):
        self.loop = loop
        self.output_limit = output_limit
        self.ws_max_message = ws_max_message
        self.on_ws_message = None
        self.on_unsubscribe = None
        self.nforms = 0
        self.plans = []
        self.render = None
        self.epfd = system.epoll_create1(system.EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(system.errno, "epoll_create1 failed")
        self.events = <system.epoll_event *>malloc(
            EPOLL_BATCH * sizeof(system.epoll_event))
        self.rbuf = <char *>malloc(RECV_BUFFER_SIZE)
        if self.events == NULL or self.rbuf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef Py_ssize_t i
        # Sockets still open at teardown are closed without a footer.
        for i in range(self.nsubs):
            if not (self.subs[i].flags & F_DEAD):
                system.close(self.subs[i].fd)
            free(self.subs[i].out)
            rbuf_free(self.subs[i].inp)
            free(self.subs[i].more)
            free(self.subs[i])
        free(self.subs)
        free(self.dead)
        free(self.events)
        free(self.rbuf)
        free(self.form_ws_limit)
        if self.epfd >= 0:
            system.close(self.epfd)

    # -- Python API ---------------------------------------------------------

    def start(self):
        """Register the epoll set with the event loop, once."""
        if not self.started:
            self.loop.add_reader(self.epfd, self._on_ready)
            self.started = True

    def close(self):
        """Close every subscriber socket (no footer) and stop polling."""
        cdef Py_ssize_t i
        if self.started:
            self.loop.remove_reader(self.epfd)
            self.started = False
        for i in range(self.nsubs):
            self._kill(self.subs[i])
        self._reap()

    def set_ws_limit(self, int form, size_t limit):
        """Largest WebSocket message subscribers of form may send."""
        cdef size_t *grown
        cdef Py_ssize_t i
        if form < 0:
            raise ValueError("form must be >= 0")
        if form >= self.form_ws_limit_len:
            grown = <size_t *>realloc(self.form_ws_limit, (form + 1) * sizeof(size_t))
            if grown == NULL:
                raise MemoryError()
            for i in range(self.form_ws_limit_len, form + 1):
                grown[i] = 0
            self.form_ws_limit = grown
            self.form_ws_limit_len = form + 1
        self.form_ws_limit[form] = limit

    @property
    def subscribers(self):
        """Live subscriber sockets owned by the core."""
        return self.nsubs

    def attach(self, int fd, list channels not None, int form, int kind=SUB_STREAM,
               bint ws_publish=False, double ttl=0.0, bytes initial=None):
        """Take over a connected, non-blocking socket fd.

        The core now owns fd and closes it. initial (the response head,
        header template and backlog) is written first, so it always
        precedes any message delivered to the channels.
        """
        if initial is None:
            self._attach(fd, channels, form, kind, ws_publish, ttl, NULL, 0)
        else:
            self._attach(fd, channels, form, kind, ws_publish, ttl,
                         PyBytes_AS_STRING(initial), <size_t>PyBytes_GET_SIZE(initial))

    cdef int _attach(self, int fd, list channels, int form, int kind,
                     bint ws_publish, double ttl,
                     const char *initial, size_t n) except -1:
        """attach() for C callers (the front door): initial is n bytes."""
        cdef Sub *sub
        cdef system.epoll_event ev
        cdef uint32_t expires = 0
        if ttl > 0:
            expires = self.clock + <uint32_t>(ttl + 0.999)
        if form < 0 or form >= self.nforms:
            system.close(fd)
            raise ValueError(f"form {form} is not registered")
        sub = self._new_sub(fd, channels, form, kind, ws_publish, expires)
        ev.events = system.EPOLLIN | system.EPOLLRDHUP
        ev.data.ptr = <void *>sub
        if system.epoll_ctl(self.epfd, system.EPOLL_CTL_ADD, fd, &ev) < 0:
            self._kill(sub)
            self._reap()
            raise OSError(system.errno, "epoll_ctl failed")
        self.attached += 1
        if n:
            # The backlog a subscriber asked for may be larger than the
            # slow-consumer limit; only what comes after it counts.
            self.unlimited = True
            try:
                self._write(sub, initial, n)
            finally:
                self.unlimited = False
        if not self.dispatching:
            self._reap()
        return 0

    def ping(self, list payloads not None, list intervals not None):
        """Write payloads[form] to each subscriber idle for intervals[form] s.

        As in push-stream, a subscriber that got anything within its
        interval is not pinged: the timer restarts with every write.
        """
        cdef Py_ssize_t i, n = self.nsubs, sent = 0, nf = len(payloads)
        cdef Sub *sub
        cdef PyObject *p
        cdef uint32_t *every
        if len(intervals) != nf:
            raise ValueError("payloads and intervals differ in length")
        every = <uint32_t *>malloc((nf + 1) * sizeof(uint32_t))
        if every == NULL:
            raise MemoryError()
        try:
            for i in range(nf):
                every[i] = <uint32_t>intervals[i]
            for i in range(n):
                sub = self.subs[i]
                if sub.flags & (F_DEAD | F_CLOSING) or sub.form >= nf:
                    continue
                p = PyList_GET_ITEM(payloads, sub.form)
                if p == <PyObject *>None or self.clock - sub.last_out < every[sub.form]:
                    continue
                self._write(sub, PyBytes_AS_STRING(<object>p),
                            <size_t>PyBytes_GET_SIZE(<object>p))
                sent += 1
        finally:
            free(every)
        if not self.dispatching:
            self._reap()
        return sent

    def expire(self, uint32_t now, object footer):
        """Advance the clock; close subscribers whose TTL ran out.

        footer(form) gives the bytes sent before closing (may be b"").
        """
        cdef Py_ssize_t i, n = self.nsubs, cut = 0
        cdef Sub *sub
        cdef dict cache = {}
        self.clock = now
        for i in range(n):
            sub = self.subs[i]
            if sub.expires == 0 or sub.expires > now:
                continue
            if sub.flags & F_CLOSING:
                # Its footer never drained: the peer stopped reading.
                self._kill(sub)
                continue
            if sub.flags & F_DEAD:
                continue
            self._goodbye(sub, footer, cache)
            cut += 1
        if not self.dispatching:
            self._reap()
        return cut

    cdef int _goodbye(self, Sub *sub, object footer, dict cache) except -1:
        """Send footer(form), rendered once per form in cache, then close."""
        cdef object data = cache.get(sub.form)
        if data is None:
            data = cache[sub.form] = footer(sub.form)
        if PyBytes_GET_SIZE(data):
            self._write(sub, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
        self._close_after_flush(sub)
        return 0

    def close_all(self, object footer):
        """Drain: send footer(form) to every subscriber and close it."""
        cdef Py_ssize_t i, n = self.nsubs, closed = 0
        cdef Sub *sub
        cdef dict cache = {}
        for i in range(n):
            sub = self.subs[i]
            if sub.flags & (F_DEAD | F_CLOSING):
                continue
            self._goodbye(sub, footer, cache)
            closed += 1
        if not self.dispatching:
            self._reap()
        return closed

    def memory(self):
        """User-space bytes the core holds for its subscribers."""
        cdef Py_ssize_t i
        cdef size_t total = self.cap * sizeof(Sub *)
        cdef Sub *sub
        for i in range(self.nsubs):
            sub = self.subs[i]
            total += sizeof(Sub)
            if sub.nlinks > 1:
                total += (sub.nlinks - 1) * sizeof(Link)
            if sub.out != NULL:
                total += sizeof(WBuf) + sub.out.cap
            if sub.inp != NULL:
                total += sizeof(RBuf) + sub.inp.raw_cap + sub.inp.msg_cap
            # the channel's pointer to it
            total += sub.nlinks * sizeof(Sub *)
        return total

    def counters(self):
        return {
            "subscribers": self.nsubs,
            "attached": self.attached,
            "detached": self.detached,
            "deliveries": self.deliveries,
            "send_calls": self.send_calls,
            "bytes_sent": self.bytes_sent,
            "slow_consumers_cut": self.slow_cut,
            "buffered_bytes": self.buffered_bytes,
            "pending_reap": self.ndead,
            "sub_struct_bytes": sizeof(Sub),
        }

    # -- subscriber life cycle -----------------------------------------------

    cdef Sub *_new_sub(self, int fd, list channels, int form, int kind,
                       bint ws_publish, uint32_t expires) except NULL:
        cdef Sub *sub
        cdef Sub **grown
        cdef Py_ssize_t cap, i, n = len(channels)
        cdef Channel ch
        if n == 0:
            system.close(fd)
            raise ValueError("a subscriber needs at least one channel")
        for i in range(n):
            if not isinstance(channels[i], Channel):
                system.close(fd)
                raise TypeError("channels must be Channel objects")
        if self.nsubs == self.cap:
            cap = self.cap * 2 if self.cap else 64
            grown = <Sub **>realloc(self.subs, cap * sizeof(Sub *))
            if grown == NULL:
                system.close(fd)
                raise MemoryError()
            self.subs = grown
            self.cap = cap
        sub = <Sub *>calloc(1, sizeof(Sub))
        if sub == NULL:
            system.close(fd)
            raise MemoryError()
        sub.fd = fd
        sub.form = <uint16_t>form
        sub.kind = <uint8_t>kind
        sub.flags = F_WS_PUBLISH if ws_publish else 0
        sub.expires = expires
        sub.last_out = self.clock
        sub.slot = <uint32_t>self.nsubs
        self.subs[self.nsubs] = sub
        self.nsubs += 1
        if n > 1:
            sub.more = <Link *>calloc(n - 1, sizeof(Link))
            if sub.more == NULL:
                self._kill(sub)
                raise MemoryError()
        for i in range(n):
            ch = <Channel>channels[i]
            ch._add(sub, &sub.link0 if i == 0 else &sub.more[i - 1])
            sub.nlinks += 1
        return sub

    cpdef bint queue(self, dict pending, Channel ch, Message msg) except -1:
        """Queue msg on ch for deliver_queued(); True when it is the first
        message queued for ch (pending[ch] was just made)."""
        cdef PyObject *p = PyDict_GetItem(pending, ch)
        if p == NULL:
            pending[ch] = [msg]
            return True
        (<list>p).append(msg)
        return False

    cpdef list deliver_queued(self, dict pending):
        """Deliver the messages queued per channel (channel -> [Message],
        in publish order) and empty `pending`. Returns (channel, first
        message) for each channel with long-polling waiters, for the
        server to wake them, or None."""
        cdef list woken = None
        cdef dict batch
        cdef Channel ch
        if not pending:
            return None
        # Delivering may queue more (an unsubscribe event): into `pending`,
        # for the next flush.
        batch = pending.copy()
        pending.clear()
        for key, msgs in batch.items():
            ch = <Channel>key
            ch._fan_out(None, <list>msgs)
            if ch.waiters:
                if woken is None:
                    woken = []
                woken.append((ch, (<list>msgs)[0]))
        return woken

    cdef bytes _render(self, int form, list msgs):
        """msgs as a subscriber of form receives them, in one piece."""
        cdef object plan = None
        cdef Py_ssize_t i, n = PyList_GET_SIZE(msgs)
        cdef list out
        if form < PyList_GET_SIZE(self.plans):
            plan = <object>PyList_GET_ITEM(self.plans, form)
        if plan is not None:
            if n == 1:
                return (<Plan>plan).render(<Message>PyList_GET_ITEM(msgs, 0))
            out = [(<Plan>plan).render(<Message>PyList_GET_ITEM(msgs, i))
                   for i in range(n)]
        elif n == 1:
            return self.render(form, <object>PyList_GET_ITEM(msgs, 0))
        else:
            out = [self.render(form, <object>PyList_GET_ITEM(msgs, i))
                   for i in range(n)]
        return b"".join(out)

    cdef int _write(self, Sub *sub, const char *data, size_t n) except -1:
        # Fast path: nothing queued for this socket, so the kernel can take
        # the bytes now and order is kept. Only a refusal is buffered.
        cdef ssize_t r
        if sub.flags & F_DEAD:
            return 0
        sub.last_out = self.clock
        if sub.out != NULL and sub.out.len > sub.out.pos:
            return self._queue(sub, data, n)
        r = system.send(sub.fd, data, n, system.MSG_NOSIGNAL)
        self.send_calls += 1
        if r == <ssize_t>n:
            self.bytes_sent += n
            return 0
        if r < 0:
            if system.FP_WOULD_BLOCK(system.errno):
                r = 0
            else:
                self._kill(sub)
                return 0
        self.bytes_sent += <size_t>r
        return self._queue(sub, data + r, n - <size_t>r)

    cdef int _queue(self, Sub *sub, const char *data, size_t n) except -1:
        cdef system.epoll_event ev
        cdef size_t pending = wbuf_pending(sub.out)
        if pending + n > self.output_limit and not self.unlimited:
            # A slow consumer: cut it rather than let memory grow.
            self.slow_cut += 1
            self._kill(sub)
            return 0
        sub.out = wbuf_append(sub.out, data, n)
        self.buffered_bytes += n
        if not (sub.flags & F_WANT_OUT):
            ev.events = system.EPOLLIN | system.EPOLLOUT | system.EPOLLRDHUP
            ev.data.ptr = <void *>sub
            system.epoll_ctl(self.epfd, system.EPOLL_CTL_MOD, sub.fd, &ev)
            sub.flags |= F_WANT_OUT
        return 0

    cdef int _flush(self, Sub *sub) except -1:
        cdef system.epoll_event ev
        cdef WBuf *out = sub.out
        cdef ssize_t r
        cdef size_t pending = wbuf_pending(out)
        if pending:
            r = system.send(sub.fd, out.data + out.pos, pending, system.MSG_NOSIGNAL)
            self.send_calls += 1
            if r < 0:
                if system.FP_WOULD_BLOCK(system.errno):
                    return 0
                self._kill(sub)
                return 0
            out.pos += <size_t>r
            self.bytes_sent += <size_t>r
            self.buffered_bytes -= <size_t>r
            if <size_t>r < pending:
                return 0
        # Drained: free the buffer so an idle subscriber costs no more than
        # its struct, and stop asking for EPOLLOUT.
        free(sub.out)
        sub.out = NULL
        if sub.flags & F_CLOSING:
            self._kill(sub)
            return 0
        if sub.flags & F_WANT_OUT:
            ev.events = system.EPOLLIN | system.EPOLLRDHUP
            ev.data.ptr = <void *>sub
            system.epoll_ctl(self.epfd, system.EPOLL_CTL_MOD, sub.fd, &ev)
            sub.flags &= ~F_WANT_OUT
        return 0

    cdef void _kill(self, Sub *sub) noexcept:
        """Close the socket now; the struct goes at the next reap."""
        if sub.flags & F_DEAD:
            return
        # close() also drops the fd from the epoll set: the core holds the
        # only descriptor of this socket.
        system.close(sub.fd)
        sub.flags |= F_DEAD
        if sub.out != NULL:
            self.buffered_bytes -= wbuf_pending(sub.out)
        self._mark(sub)

    cdef void _close_after_flush(self, Sub *sub) noexcept:
        if sub.flags & F_DEAD:
            return
        if wbuf_pending(sub.out):
            # Stop deliveries now; the socket closes when the footer is out,
            # or at the latest CLOSE_GRACE seconds from now.
            sub.flags |= F_CLOSING
            sub.expires = self.clock + CLOSE_GRACE
            self._mark(sub)
        else:
            self._kill(sub)

    cdef int _mark(self, Sub *sub) except -1:
        cdef Sub **grown
        cdef Py_ssize_t cap
        if sub.flags & F_LISTED:
            return 0
        if self.ndead == self.dead_cap:
            cap = self.dead_cap * 2 if self.dead_cap else 64
            grown = <Sub **>realloc(self.dead, cap * sizeof(Sub *))
            if grown == NULL:
                raise MemoryError()
            self.dead = grown
            self.dead_cap = cap
        self.dead[self.ndead] = sub
        self.ndead += 1
        sub.flags |= F_LISTED
        return 0

    cdef int _reap(self) except -1:
        cdef Py_ssize_t i = 0
        cdef Sub *sub
        if self.reaping or self.ndead == 0:
            return 0
        self.reaping = True
        try:
            # on_unsubscribe may publish and mark more subscribers: the loop
            # re-reads ndead and picks them up too.
            while i < self.ndead:
                sub = self.dead[i]
                i += 1
                sub.flags &= ~F_LISTED
                if not (sub.flags & F_UNLINKED):
                    self._unlink(sub)
                if sub.flags & F_DEAD:
                    self._free(sub)
            self.ndead = 0
        finally:
            self.reaping = False
        return 0

    cdef void _unlink(self, Sub *sub) noexcept:
        cdef uint32_t k
        cdef Link *link
        cdef object ch
        sub.flags |= F_UNLINKED
        for k in range(sub.nlinks):
            link = &sub.link0 if k == 0 else &sub.more[k - 1]
            ch = <object>link.channel
            (<Channel>ch)._remove(link)
            Py_DECREF(ch)  # the link's reference; `ch` keeps one for now
            link.channel = NULL
            if self.on_unsubscribe is not None:
                try:
                    self.on_unsubscribe(ch)
                except Exception as exc:
                    self.loop.call_exception_handler({
                        "message": "fastpush: on_unsubscribe failed",
                        "exception": exc,
                    })

    cdef void _unlink_one(self, Sub *sub, Channel ch) noexcept:
        """Remove one of a subscriber's several channels; it stays open."""
        cdef uint32_t k, last = sub.nlinks - 1
        cdef Link *link = NULL
        cdef Link *tail
        for k in range(sub.nlinks):
            link = &sub.link0 if k == 0 else &sub.more[k - 1]
            if link.channel == <PyObject *>ch:
                break
            link = NULL
        if link == NULL or sub.nlinks < 2:
            return
        ch._remove(link)
        # Keep the links dense: the last one fills the hole. Its channel
        # still points at this Sub, so only the storage moves.
        tail = &sub.more[last - 1]
        if link != tail:
            link[0] = tail[0]
        tail.channel = NULL
        sub.nlinks = last
        if last == 1:
            free(sub.more)
            sub.more = NULL
        if self.on_unsubscribe is not None:
            try:
                self.on_unsubscribe(ch)
            except Exception as exc:
                self.loop.call_exception_handler({
                    "message": "fastpush: on_unsubscribe failed",
                    "exception": exc,
                })
        Py_DECREF(ch)  # the link's reference

    cdef void _free(self, Sub *sub) noexcept:
        cdef Py_ssize_t slot = sub.slot
        cdef Sub *moved
        if FASTPUSH_DEBUG:
            assert self.subs[slot] == sub
        self.nsubs -= 1
        if slot != self.nsubs:
            moved = self.subs[self.nsubs]
            self.subs[slot] = moved
            moved.slot = <uint32_t>slot
        free(sub.out)
        rbuf_free(sub.inp)
        free(sub.more)
        free(sub)
        self.detached += 1

    # -- readiness -------------------------------------------------------------

    def _on_ready(self):
        cdef int n, i, rounds = 0
        cdef Sub *sub
        cdef uint32_t ev
        self.dispatching = True
        try:
            # Bounded, so a flood of events cannot starve the other
            # callbacks of the loop; epoll is level-triggered and calls
            # again for what is left.
            while rounds < 8:
                rounds += 1
                n = system.epoll_wait(self.epfd, self.events, EPOLL_BATCH, 0)
                if n <= 0:
                    break
                for i in range(n):
                    sub = <Sub *>self.events[i].data.ptr
                    ev = self.events[i].events
                    if sub.flags & F_DEAD:
                        continue
                    if ev & system.EPOLLOUT:
                        self._flush(sub)
                        if sub.flags & F_DEAD:
                            continue
                    if ev & (system.EPOLLIN | system.EPOLLRDHUP |
                             system.EPOLLHUP | system.EPOLLERR):
                        self._on_readable(sub)
                if n < EPOLL_BATCH:
                    break
        finally:
            self.dispatching = False
        self._reap()

    cdef int _on_readable(self, Sub *sub) except -1:
        cdef ssize_t r = system.recv(sub.fd, self.rbuf, RECV_BUFFER_SIZE, 0)
        if r == 0:
            self._kill(sub)  # the peer closed
            return 0
        if r < 0:
            if system.FP_WOULD_BLOCK(system.errno):
                return 0
            self._kill(sub)
            return 0
        if sub.kind == SUB_WEBSOCKET:
            return ws_feed(self, sub, self.rbuf, <size_t>r)
        # A streaming subscriber has nothing to say; push-stream ignores
        # such bytes too.
        return 0
