@cython.no_gc
@cython.final
cdef class Channel:
    """A channel: its subscribers (C structs), stored messages and state.

    The registry (fastpush.registry) owns the dict of channels and decides
    what is stored; this class holds the arrays and does the fan-out.

    A server may hold a million channels, so this is a no_gc type: the
    collector never traverses them. The only references that could close
    a cycle are long-polling waiters (closures that may name the channel);
    they are always removed when answered, timed out or disconnected.
    """

    def __cinit__(self, object id, Hub hub not None):
        self.id = id
        self.hub = hub
        self.subs = NULL
        self.nsubs = 0
        self.cap = 0
        self.store = NULL
        self.store_head = 0
        self.store_len = 0
        self.store_cap = 0
        self.waiters = None
        self.last_message_id = 0
        self.published_messages = 0
        self.last_message_time = 0.0
        self.last_message_tag = 0
        self.expires = 0.0
        self.created = 0.0
        self.wildcard = False
        self.for_events = False
        self.due = 0

    def __dealloc__(self):
        # Every Sub holds a reference to its channels, so none is left here.
        free(self.subs)
        self._store_clear()
        free(self.store)

    # -- stored messages -------------------------------------------------------

    cdef void _store_clear(self) noexcept:
        cdef Py_ssize_t i
        for i in range(self.store_len):
            Py_DECREF(<object>self.store[(self.store_head + i) % self.store_cap])
        self.store_head = 0
        self.store_len = 0

    @property
    def stored(self):
        """Number of stored messages."""
        return self.store_len

    cpdef store_append(self, Message msg):
        cdef Py_ssize_t cap, i
        cdef PyObject **grown
        if self.store_len == self.store_cap:
            cap = self.store_cap * 2 if self.store_cap else 4
            grown = <PyObject **>malloc(cap * sizeof(PyObject *))
            if grown == NULL:
                raise MemoryError()
            for i in range(self.store_len):
                grown[i] = self.store[(self.store_head + i) % self.store_cap]
            free(self.store)
            self.store = grown
            self.store_cap = cap
            self.store_head = 0
        Py_INCREF(msg)
        self.store[(self.store_head + self.store_len) % self.store_cap] = <PyObject *>msg
        self.store_len += 1

    cpdef Message new_message(self, bytes text, long long time, long tag,
                              object event_id, object event_type, double expires,
                              bint store):
        """Stamp the channel's next message id on a new message and add it.

        The publish path of a worker that stamps its own messages (one
        worker, the in-process glue); the registry keeps the global parts.
        """
        self.last_message_id += 1
        msg = Message(self.last_message_id, time, tag, text, self.id,
                      event_id, event_type, expires)
        self.add_message(msg, store)
        return msg

    cpdef add_message(self, Message msg, bint store):
        """Count msg as published on this channel; store it if asked."""
        self.last_message_time = msg.time
        self.last_message_tag = msg.tag
        self.published_messages += 1
        if store:
            self.store_append(msg)

    def store_popleft(self):
        """Remove and return the oldest stored message."""
        cdef object msg
        if self.store_len == 0:
            raise IndexError("no stored message")
        msg = <object>self.store[self.store_head]
        Py_DECREF(msg)  # the ring's reference; `msg` holds its own
        self.store_head = (self.store_head + 1) % self.store_cap
        self.store_len -= 1
        if self.store_len == 0:
            self.store_head = 0
        return msg

    def store_first(self):
        """The oldest stored message, or None."""
        if self.store_len == 0:
            return None
        return <object>self.store[self.store_head]

    def stored_messages(self):
        """The stored messages, oldest first, as a new list."""
        cdef Py_ssize_t i
        return [<object>self.store[(self.store_head + i) % self.store_cap]
                for i in range(self.store_len)]

    def store_clear(self):
        self._store_clear()

    def __repr__(self):
        return f"<Channel {self.id!r} subscribers={self.nsubs}>"

    @property
    def subscribers(self):
        """Subscribers owned by the core (streaming, eventsource, websocket)."""
        return self.nsubs

    cdef int _add(self, Sub *sub, Link *link) except -1:
        cdef Sub **grown
        cdef Py_ssize_t cap
        if self.nsubs == self.cap:
            cap = self.cap * 2 if self.cap else 4
            grown = <Sub **>realloc(self.subs, cap * sizeof(Sub *))
            if grown == NULL:
                raise MemoryError()
            self.subs = grown
            self.cap = cap
        self.subs[self.nsubs] = sub
        link.channel = <PyObject *>self
        link.index = self.nsubs
        Py_INCREF(self)
        self.nsubs += 1
        return 0

    cdef void _remove(self, Link *link) noexcept:
        # Swap the last subscriber into the hole; fix the index its link
        # keeps for this channel. The caller drops the link's reference.
        cdef Py_ssize_t i = link.index
        cdef Py_ssize_t last = self.nsubs - 1
        cdef Sub *moved
        cdef uint32_t k
        if i != last:
            moved = self.subs[last]
            self.subs[i] = moved
            # Fix the link that pointed at slot `last`: match the index too,
            # since a subscriber may list the same channel twice (push-stream
            # then delivers every message twice, and so do we).
            if moved.link0.channel == <PyObject *>self and moved.link0.index == last:
                moved.link0.index = i
            else:
                for k in range(moved.nlinks - 1):
                    if (moved.more[k].channel == <PyObject *>self
                            and moved.more[k].index == last):
                        moved.more[k].index = i
                        break
        self.nsubs = last
        if self.nsubs == 0 and self.cap > 64:
            # A channel that had a crowd gives its array back when empty.
            free(self.subs)
            self.subs = NULL
            self.cap = 0

    def deliver(self, object render):
        """Write render(form) to every subscriber; returns subscribers reached.

        render is called at most once per form present on the channel, so
        a message is formatted once per form however many subscribers
        there are. Each subscriber gets exactly one write.
        """
        return self._fan_out(render, None)

    def deliver_messages(self, list msgs not None):
        """Write msgs to every subscriber, one write each; returns the
        subscribers reached. Each form's bytes come from its Plan in C,
        or from hub.render(form, msg) for a form only Python renders."""
        if not msgs:
            return 0
        return self._fan_out(None, msgs)

    cdef Py_ssize_t _fan_out(self, object render, list msgs) except -1:
        # render(form), or the hub's rendering of msgs for the form.
        cdef Hub hub = self.hub
        cdef Py_ssize_t i, n = self.nsubs
        cdef Py_ssize_t reached = 0
        cdef Sub *sub
        cdef PyObject *p
        cdef object data
        cdef list cache
        if n == 0:
            return 0
        cache = [None] * hub.nforms
        # self.subs does not change under this loop: a subscriber that
        # fails is only marked, and removed at the reap below.
        for i in range(n):
            sub = self.subs[i]
            # Each Sub is its own allocation, so reading it is a cache miss
            # per subscriber; ask for the next one now, and the miss
            # overlaps this subscriber's send().
            if i + 1 < n:
                system.FP_PREFETCH(self.subs[i + 1])
            if sub.flags & (F_DEAD | F_CLOSING):
                continue
            p = PyList_GET_ITEM(cache, sub.form)
            if p == <PyObject *>None:
                if render is None:
                    data = hub._render(sub.form, msgs)
                else:
                    data = render(sub.form)
                    if not PyBytes_Check(data):
                        raise TypeError("render() must return bytes")
                cache[sub.form] = data
                p = <PyObject *>data
            hub._write(sub, PyBytes_AS_STRING(<object>p),
                       <size_t>PyBytes_GET_SIZE(<object>p))
            reached += 1
        hub.deliveries += reached
        if not hub.dispatching:
            hub._reap()
        return reached

    def close_subscribers(self, object last, object other=None):
        """The channel is going away: tell each subscriber.

        A subscriber for which this was the last channel gets last(form)
        (the deleted message and the footer) and is closed; one that has
        other channels gets other(form) (the deleted message) and stays.
        """
        cdef Hub hub = self.hub
        cdef Py_ssize_t i
        cdef Sub *sub
        cdef object data
        cdef dict done = {}, kept = {}
        # Downwards: unlinking swaps the last subscriber into slot i, and
        # every slot above i has been handled already.
        i = self.nsubs - 1
        while i >= 0:
            sub = self.subs[i]
            i -= 1
            if sub.flags & (F_DEAD | F_CLOSING):
                continue
            if sub.nlinks > 1 and other is not None:
                data = kept.get(sub.form)
                if data is None:
                    data = kept[sub.form] = other(sub.form)
                if PyBytes_GET_SIZE(data):
                    hub._write(sub, PyBytes_AS_STRING(data),
                               <size_t>PyBytes_GET_SIZE(data))
                hub._unlink_one(sub, self)
                continue
            data = done.get(sub.form)
            if data is None:
                data = done[sub.form] = last(sub.form)
            if PyBytes_GET_SIZE(data):
                hub._write(sub, PyBytes_AS_STRING(data),
                           <size_t>PyBytes_GET_SIZE(data))
            hub._close_after_flush(sub)
        if not hub.dispatching:
            hub._reap()
