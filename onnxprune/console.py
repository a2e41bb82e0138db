"""The ``onnxprune`` console entry point: signals handled from the first instant.

SIGTERM (what ``timeout``, systemd and process managers send) is turned into an exception, so
every temporary file and folder is removed by the code that made it, exactly as on Ctrl-C; a
Ctrl-C while the libraries are still being imported ends with one line, not a traceback.
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
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embedded use): leave signals to the host
        pass
    try:
        from .cli import main as cli_main
    except (KeyboardInterrupt, Terminated) as exc:
        return _stopped_while_starting(exc)
    except ImportError as exc:  # an extension module reports an interruption as a failed import
        cause = _interruption(exc)
        if cause is None:
            raise
        return _stopped_while_starting(cause)
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
