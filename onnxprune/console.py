"""The ``onnxprune`` console entry point: signals handled from the first instant.

SIGTERM (what ``timeout``, systemd and process managers send) is turned into an exception, so
every temporary file and folder is removed by the code that made it, exactly as on Ctrl-C; a
signal while the libraries are still being imported is noted and, once they are, ends the run
with one line, not a traceback.
"""

from __future__ import annotations

import logging
import signal
import sys

log = logging.getLogger("onnxprune")


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM."""


def _on_sigterm(signum: int, frame: object) -> None:  # noqa: ARG001
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    # While the libraries are imported a signal is only noted: an exception raised inside an
    # extension module's initialisation can leave it half made and crash the interpreter on exit.
    pending: list[int] = []
    try:
        old_int = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
        signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))
        deferring = True
    except ValueError:  # not the main thread (embedded use): leave signals to the host
        deferring = False
    try:
        from .cli import main as cli_main
    except (KeyboardInterrupt, Terminated) as exc:
        return _stopped_while_starting(exc)
    except ImportError as exc:  # an extension module reports an interruption as a failed import
        cause = _interruption(exc)
        if cause is None:
            raise
        return _stopped_while_starting(cause)
    finally:
        if deferring:
            signal.signal(signal.SIGINT, old_int if callable(old_int) else signal.default_int_handler)
            signal.signal(signal.SIGTERM, _on_sigterm)
    if pending:
        return _stopped_while_starting(Terminated() if pending[0] == signal.SIGTERM else KeyboardInterrupt())
    return cli_main(argv)


def _interruption(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, (KeyboardInterrupt, Terminated)):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _stopped_while_starting(exc: BaseException) -> int:
    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    # logging is not configured yet: its last-resort handler writes this one line to stderr
    log.error("onnxprune: %s while starting; nothing was written", what)
    return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
