"""The exceptions of faiss_nn, one class per kind of failure of the native library.

Every error raised by the library carries the library's own message (which names the row,
column, argument or device at fault). The classes also derive from the built-in exception a
caller would naturally catch: bad input is a ``ValueError``, running out of memory a
``MemoryError``, a file the operating system refused an ``OSError``.
"""

__all__ = [
    "FaissNNError",
    "InvalidInputError",
    "UnsupportedError",
    "DeviceError",
    "OutOfMemoryError",
    "BackendError",
    "IoError",
    "InternalError",
]


class FaissNNError(Exception):
    """Base class of every error raised by faiss_nn."""


class InvalidInputError(FaissNNError, ValueError):
    """The data or an argument is wrong: ragged or non-finite rows, a missing column, an invalid
    ``k``, metric, device id or factory string."""


class UnsupportedError(FaissNNError):
    """Valid, but this build or machine cannot serve it (e.g. a GPU device without a CUDA driver,
    or a metric a flat index does not have)."""


class DeviceError(FaissNNError, RuntimeError):
    """A GPU failed (CUDA driver, cuBLAS or a kernel launch)."""


class OutOfMemoryError(FaissNNError, MemoryError):
    """Memory ran out on a device, or a search plan cannot fit the memory allowed."""


class BackendError(FaissNNError, RuntimeError):
    """faiss failed on input faiss_nn had accepted."""


class IoError(FaissNNError, OSError):
    """The operating system refused a file operation."""


class InternalError(FaissNNError, RuntimeError):
    """A bug in faiss_nn (please report it with the message)."""
