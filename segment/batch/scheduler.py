"""Is there a Dask scheduler at this address? Asked once, within a bounded time, before a
``distributed.Client`` is made.

A Client connecting to something that is not a scheduler can wait for ever (an HTTP server
waits for a request line that never comes), misreport random bytes as "out of memory", and
leaves a half-made Client whose ``__del__`` prints a traceback at exit. One ``identity``
call on a comm of our own, under a deadline on the whole exchange, answers first; the Client
is made only for a real scheduler. The wait runs on an event loop in the calling thread, so
Ctrl-C interrupts it at once.
"""

import asyncio
import socket
import time

from .. import interrupts
from ..errors import SegmentError

__all__ = ["check_scheduler"]

_HINT = "start one with 'dask scheduler' and 'dask worker ADDRESS', or check the address."


def check_scheduler(address, timeout=10.0):
    """Make sure a Dask scheduler answers at ``address`` within ``timeout`` seconds.

    Parameters
    ----------
    address : str
        E.g. ``tcp://host:8786``.
    timeout : float or str
        Seconds (or a Dask duration such as ``"10s"``) for the whole exchange:
        connection, handshake and answer.

    Returns
    -------
    float
        The seconds left of ``timeout``, for the Client's own connection.

    Raises
    ------
    SegmentError
        One line: the address is malformed, nothing listens there, it does not answer in
        time, or what answers is not a Dask scheduler.
    """
    from dask.utils import parse_timedelta
    from distributed.comm import parse_address

    timeout = float(parse_timedelta(timeout, default="seconds"))
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address, strict=True)
        get_backend(scheme)
    except (ValueError, TypeError) as err:
        raise _error(address, f"invalid address: {_one_line(err)}") from None
    if scheme == "tcp":
        _refused_at_once(address, location, timeout)
    start = time.monotonic()
    interrupts.check()  # a Ctrl-C swallowed while distributed was imported
    try:
        answer = asyncio.run(_identity(address, timeout))
    except TimeoutError:
        raise _error(
            address,
            f"no answer within {timeout:g} s; something that is not a Dask scheduler may be "
            "listening there",
        ) from None
    except OSError as err:  # refused, unreachable, closed
        raise _error(address, _one_line(err)) from None
    except Exception:  # garbage bytes: the comm fails to decode them in any way
        raise _error(address, "not a Dask scheduler: its answer is not Dask's protocol") from None
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise _error(address, "not a Dask scheduler: it answered as something else")
    return max(0.5, timeout - (time.monotonic() - start))


def _refused_at_once(address, location, timeout):
    """A refused TCP connection is final: say so now (distributed would retry until its
    timeout). Anything else is left to the exchange and its deadline."""
    from distributed.comm.addressing import parse_host_port

    try:
        host, port = parse_host_port(location)
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        raise _error(address, "connection refused: nothing listens there") from None
    except (OSError, ValueError, TypeError):
        pass


async def _identity(address, timeout):
    from distributed.comm import connect

    async def exchange():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    return await asyncio.wait_for(exchange(), timeout)


def _one_line(err):
    return " ".join(str(err).split()) or type(err).__name__


def _error(address, why):
    return SegmentError(f"cannot connect to the Dask scheduler at {address} ({why}); {_HINT}")
