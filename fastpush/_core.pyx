# cython: language_level=3
"""The hot path of fastpush: subscriber sockets, channels and the fan-out.

After the HTTP handshake (done in Python, see fastpush.http) a subscriber's
socket leaves asyncio and is owned here: one small C struct per connection,
one epoll set registered once with the event loop, and non-blocking send()
straight from C. A message is rendered once per form and the same bytes go
to every subscriber of that form; only what the kernel refuses is buffered.
The front door (core/door.pyx) accepts connections and attaches the plain
subscriber request to its channel without going through Python at all; a
keep-alive publisher connection it parses and answers in C
(core/publisher.pyx). With several workers, the messages the sequencer
stamps are applied from the bus in C too (core/busreader.pyx).
"""

cimport cython
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_AsUTF8String
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memmove, strerror

from fastpush.includes cimport system
from fastpush.includes.debug cimport FASTPUSH_DEBUG
from fastpush.includes.system cimport memmem


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

include "includes/consts.pxi"
include "core/buffers.pyx"
include "core/message.pyx"
include "core/channel.pyx"
include "core/ledger.pyx"
include "core/websocket.pyx"
include "core/plan.pyx"
include "core/hub.pyx"
include "core/door.pyx"
include "core/publisher.pyx"
include "core/busreader.pyx"

# Subscriber kinds for Hub.attach(), as Python sees them.
KIND_STREAM = SUB_STREAM
KIND_WEBSOCKET = SUB_WEBSOCKET
MESSAGE_OVERHEAD = MSG_OVERHEAD
# The bus (fastpush.bus): stamped-message frames and the frame size limit.
BUS_MSG_KIND = BUS_MSG
BUS_FRAME_LIMIT = BUS_MAX_FRAME
# Framings for Plan.
FRAME_NONE = FR_NONE
FRAME_CHUNK = FR_CHUNK
FRAME_WEBSOCKET = FR_WEBSOCKET
