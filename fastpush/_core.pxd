# Declarations of the hot path. How the pieces call each other:
#
#   Hub.attach(fd, channels, ...)   takes a socket over from asyncio after the
#                                   handshake; one Sub struct per connection.
#   Channel.deliver(render)         renders once per form (render(form) -> bytes)
#                                   and writes the same bytes to every Sub.
#   Hub._on_ready()                 the loop's reader callback on the epoll fd:
#                                   flushes pending output, reads WebSocket
#                                   frames, notices closed peers.
#   Door._on_ready()                the loop's reader callback on a listening
#                                   socket: accepts, attaches the plain
#                                   subscriber request itself, hands the rest
#                                   to Python (fastpush.http.door).
#   Hub._reap()                     frees Subs marked dead; only ever runs when
#                                   no epoll batch is being dispatched, so no
#                                   event in flight points at freed memory.

from cpython.object cimport PyObject
from libc.stdint cimport uint8_t, uint16_t, uint32_t

from fastpush.includes.system cimport epoll_event


cdef struct WBuf:
    size_t pos            # first unsent byte
    size_t len            # end of the pending bytes
    size_t cap            # bytes allocated for data
    char data[1]          # allocated inline to cap bytes


cdef struct RBuf:
    # WebSocket input that did not make a whole frame yet.
    char *raw
    size_t raw_len
    size_t raw_cap
    # Payload of a fragmented message being reassembled.
    char *msg
    size_t msg_len
    size_t msg_cap
    uint8_t msg_opcode    # 0 when no fragmented message is open


cdef struct Link:
    PyObject *channel     # owned reference to the Channel
    Py_ssize_t index      # position of the Sub in channel.subs


cdef struct Sub:
    int fd
    uint16_t form         # rendering form: index into the server's form table
    uint8_t kind          # SUB_STREAM or SUB_WEBSOCKET
    uint8_t flags         # F_* bits
    uint32_t nlinks       # channels subscribed
    uint32_t slot         # position in Hub.subs
    uint32_t expires      # Hub.clock second after which it is cut; 0: never
    uint32_t last_out     # Hub.clock second of the last write (ping timing)
    Link link0            # first channel, inline: most subscribers have one
    Link *more            # channels 2..nlinks, or NULL
    WBuf *out             # output the kernel has not taken yet, or NULL
    RBuf *inp             # partial WebSocket input, or NULL


cdef class Message:
    cdef:
        readonly long long id
        readonly long long time
        readonly long tag
        readonly bytes text
        readonly str channel
        readonly object event_id        # bytes, or None when not sent
        readonly object event_type      # bytes, or None when not sent
        public double expires           # time.time() after which it is dropped
        readonly dict rendered          # form index -> bytes


cdef class Channel:
    cdef:
        readonly object id
        Hub hub
        Sub **subs
        Py_ssize_t nsubs
        Py_ssize_t cap
        # Stored messages: a ring of owned Message references, oldest at
        # store_head. A C array, not a deque, so a channel holds no object
        # the cyclic GC has to traverse.
        PyObject **store
        Py_ssize_t store_head
        Py_ssize_t store_len
        Py_ssize_t store_cap
        # Python-level state kept here so a channel is one object.
        public object waiters           # list of long-polling callbacks, or None
        public long long last_message_id
        public long long published_messages
        public double last_message_time
        public long last_message_tag
        public double expires           # inactivity deadline (time.time())
        public double created
        public bint wildcard
        public bint for_events
        public long long due            # the registry's wheel second, 0: none

    cpdef Message new_message(self, bytes text, long long time, long tag,
                              object event_id, object event_type, double expires,
                              bint store)
    cpdef add_message(self, Message msg, bint store)
    cpdef store_append(self, Message msg)
    cdef int _add(self, Sub *sub, Link *link) except -1
    cdef void _store_clear(self) noexcept
    cdef void _remove(self, Link *link) noexcept
    cdef Py_ssize_t _fan_out(self, object render, list msgs) except -1


cdef class Ledger:
    cdef:
        readonly object wheel           # the registry's DueWheel
        public long long published_messages
        public long long stored_messages
        public long long stored_bytes
        public long long last_time      # second of the last stamp
        public long long last_tag       # its tag
        readonly double inactivity      # channel_inactivity_time
        readonly double message_ttl
        readonly long long memory_limit # shared_memory_size
        readonly long long max_stored   # per channel; -1: no limit

    cdef Message stamp(self, Channel ch, bytes text, object event_id,
                       object event_type, bint store, double now)
    cdef int _record(self, Channel ch, Message msg, bint store, double now) except -1
    cdef int _account(self, Channel ch, Message msg, bint store,
                      long long size, double now) except -1
    cpdef schedule(self, Channel ch, double when)
    cpdef drop_oldest(self, Channel ch)


cdef class Plan:
    cdef:
        int *codes              # token of each gap between literals (T_*)
        Py_ssize_t ntokens
        tuple literals          # ntokens + 1 bytes
        bint text_only          # the template is exactly ~text~
        readonly int framing    # FRAME_*
        object date             # callable(time) -> bytes, for ~time~

    cpdef bytes apply(self, Message msg, object text=*)
    cpdef bytes render(self, Message msg)
    cpdef bytes frame(self, bytes data)


cdef class Hub:
    cdef:
        int epfd
        object loop
        bint started
        bint dispatching        # inside an epoll batch: reaping must wait
        # every live Sub, for pings and TTL sweeps
        Sub **subs
        Py_ssize_t nsubs
        Py_ssize_t cap
        # Subs to free (or unlink) at the next reap
        Sub **dead
        Py_ssize_t ndead
        Py_ssize_t dead_cap
        epoll_event *events
        char *rbuf
        readonly size_t output_limit    # pending bytes that make a slow consumer
        readonly size_t ws_max_message  # largest WebSocket message accepted
        # per-form WebSocket message limit (a location's client_max_body_size);
        # 0 or a form past the array falls back to ws_max_message
        size_t *form_ws_limit
        Py_ssize_t form_ws_limit_len
        public uint32_t clock           # whole seconds, advanced by tick()
        public Py_ssize_t nforms        # forms registered by the server
        # per form: its Plan, or None when only Python renders it (render)
        public list plans
        public object render            # callable(form, msg) -> bytes
        bint reaping
        bint unlimited          # writing a subscriber's initial bytes
        public object on_ws_message     # callable(channels, payload, is_text)
        public object on_unsubscribe    # callable(channel) or None
        # counters
        readonly unsigned long long attached
        readonly unsigned long long detached
        readonly unsigned long long deliveries
        readonly unsigned long long send_calls
        readonly unsigned long long bytes_sent
        readonly unsigned long long slow_cut
        readonly unsigned long long buffered_bytes

    cdef Sub *_new_sub(self, int fd, list channels, int form, int kind,
                       bint ws_publish, uint32_t expires) except NULL
    cdef int _attach(self, int fd, list channels, int form, int kind,
                     bint ws_publish, double ttl,
                     const char *initial, size_t n) except -1
    cpdef bint queue(self, dict pending, Channel ch, Message msg) except -1
    cpdef list deliver_queued(self, dict pending)
    cdef bytes _render(self, int form, list msgs)
    cdef int _write(self, Sub *sub, const char *data, size_t n) except -1
    cdef int _queue(self, Sub *sub, const char *data, size_t n) except -1
    cdef int _flush(self, Sub *sub) except -1
    cdef void _kill(self, Sub *sub) noexcept
    cdef void _close_after_flush(self, Sub *sub) noexcept
    cdef int _goodbye(self, Sub *sub, object footer, dict cache) except -1
    cdef int _mark(self, Sub *sub) except -1
    cdef int _reap(self) except -1
    cdef void _unlink(self, Sub *sub) noexcept
    cdef void _unlink_one(self, Sub *sub, Channel ch) noexcept
    cdef void _free(self, Sub *sub) noexcept
    cdef int _on_readable(self, Sub *sub) except -1


# Bytes gathered to be sent together (the door publisher's answers).
cdef struct OutBuf:
    char *data
    size_t len
    size_t cap


cdef class DoorRoute:
    cdef:
        readonly bytes prefix   # path up to the channel id: b"/sub/"
        readonly int form       # the hub's form for these subscribers
        readonly double ttl     # subscriber_connection_ttl, 0: none
        readonly bytes head     # response head before the Date line
        readonly bytes tail     # after it, and the header template


cdef class Door:
    cdef:
        Hub hub
        object loop
        dict channels           # the registry's channel id -> Channel
        list routes             # DoorRoute, tried in order
        list fds                # listening sockets accepted on
        char *buf               # a new connection's request, then its answer
        object adopt            # callable(fd, data): the Python path
        object flush            # callable(): deliver the messages queued so far
        object subscribed       # callable(channels): after a batch
        object create           # callable(channel_id): a new Channel or None
        object date             # callable() -> b"Date: ...\r\n"
        bytes date_line
        long date_second
        Py_ssize_t header_limit
        Py_ssize_t max_id_length
        bytes wildcard_prefix
        bytes events_id
        bint flushed            # flush() called in this accept batch
        bint paused
        # The publisher side (core/publisher.pyx).
        list pub_routes         # PubRoute, tried in order
        dict publishers         # fd -> Publisher: connections served here
        object publish          # callable(channel_id, text, store) -> Channel | None
        object sequence         # callable(channel_id, text, store, done), or None
        object refuse           # callable(status, explain) -> the error answer
        list answering          # Publishers with answers to send (sequenced)
        Ledger ledger           # stamps publishes to existing channels, or None
        dict pending            # the server's channel -> [Message] to deliver
        Py_ssize_t keepalive_requests
        bint gzip               # responses may be compressed
        unsigned int pub_gen    # bumped when the routes change
        OutBuf out              # answers of one read, sent together (one worker)
        readonly unsigned long long served      # subscribers attached here
        readonly unsigned long long handed_on   # connections given to Python
        readonly unsigned long long published   # publishes answered here

    cdef void _out_of_resources(self, int err) noexcept
    cdef object _serve(self, int fd)
    cdef bytes _date(self)
    cdef int _publisher(self, int fd, size_t n) except -1
    cdef int _hand_on(self, int fd, bytes data) except -1
    cdef DoorRoute _match(self, size_t n, size_t *start, size_t *length)


cdef class PubRoute:
    cdef:
        readonly bytes path     # the exact path: b"/pub"
        readonly bytes arg      # the query argument with the channel id: b"id"
        readonly bint store     # store_messages
        readonly Py_ssize_t body_limit
        readonly bytes head     # answer head before the Date line
        readonly bytes mid      # after it, up to the Content-Length digits
        readonly bytes post     # after the digits, to the blank line
        readonly tuple info     # channel-info body around its fields, or None


# What the publisher's parser found: the route, where the channel id and
# the body are (core/publisher.pyx).
cdef struct PubReq:
    Py_ssize_t route      # index in door.pub_routes
    size_t id_start
    size_t id_len
    size_t body_start
    size_t body_len
    size_t end            # one past the request


cdef class Publisher:
    cdef:
        Door door
        int fd
        char *buf               # requests read and not yet handled
        size_t len
        size_t cap
        Py_ssize_t served       # requests answered on this connection
        unsigned int gen        # the door's pub_gen when it came
        long seen               # time() of its last read
        # With several workers (door.sequence): publishes the sequencer has
        # not answered yet, oldest first from `head`, and their answers.
        list waiting            # (PubRoute, channel id) of each
        Py_ssize_t head
        OutBuf ans              # answers not sent yet, in request order
        bint queued             # in door.answering
        bint held               # not reading: it goes on or closes when answered
        bint paused             # not reading until the sequencer catches up
        bint handing            # goes to the Python path once answered
        bint eof                # the peer is done sending

    cdef int feed(self, const char *data, size_t n) except -1
    cdef int _next(self, size_t pos, PubReq *req) except -2
    cdef int serve(self, bint eof) except -1
    cdef int _serve_sequenced(self, bint eof) except -1
    cdef int _settle(self) except -1
    cdef void _stop_reading(self, bint hold) noexcept
    cdef size_t _send_out(self) noexcept
    cdef int _hand_on(self, size_t pos, ssize_t sent=*) except -1
    cdef void _forget(self) noexcept


cdef class BusReader:
    cdef:
        bytearray buf           # the start of a frame not whole yet
        object on_frame         # callable(frame): every frame not applied here
        bint fast               # stamped messages are applied here
        dict channels           # the registry's channel id -> Channel
        Ledger ledger
        Hub hub
        dict pending            # the server's channel -> [Message] to deliver
        object on_queued        # callable(): a channel's first queued message
        readonly unsigned long long applied     # messages applied here

    cdef bint _apply(self, tuple frame, double now) except -1
