"""The terminal: logs on stderr (text or JSON), progress bars, summaries on stdout.

Layer: edges (CLI only; the library never prints).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import click
import numpy as np

from ..io.location import redact

logger = logging.getLogger("streammix")


def _one_line(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.name == "py.warnings":
        # "file:line: Category: text\n  source line" -> "Category: text"
        first = message.strip().splitlines()[0]
        message = first.split(": ", 1)[1] if ": " in first else first
    return redact(" ".join(line.strip() for line in message.splitlines()))


def plain(value: Any) -> Any:
    """``value`` as strict JSON values: mappings, lists, strings, booleans, ``None`` and
    finite numbers; NaN and infinity become ``None`` (JSON has neither), numpy values
    their Python equivalents, anything else its text."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def to_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (see :func:`plain`); a non-finite number that got
    past :func:`plain` fails loudly rather than print ``NaN``."""
    return json.dumps(plain(value), allow_nan=False, **kwargs)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{self.formatTime(record, '%H:%M:%S')} {record.levelname} {_one_line(record)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per log record."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "message": _one_line(record),
        }
        doc.update(getattr(record, "fields", {}) or {})
        return to_json(doc)


def setup_logging(log_format: str, quiet: bool, verbose: int) -> None:
    """Route the ``streammix`` logger to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    logger.handlers[:] = [handler]
    logger.propagate = False
    # Python warnings (e.g. EM stopping at --max-iter) become one log line each.
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers[:] = [handler]
    warnings_logger.propagate = False
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    logger.setLevel(level)
    # distributed is chatty on shutdown; keep its warnings, drop its info.
    logging.getLogger("distributed").setLevel(logging.ERROR if quiet else logging.WARNING)


class Progress:
    """A one-line progress bar on stderr; silent without a terminal or with --quiet."""

    def __init__(self, label: str, enabled: bool, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.start = time.perf_counter()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        width = 30
        filled = int(width * done / total)
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {elapsed:5.1f}s")
        self.stream.flush()
        self.drawn = True
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False


class IterationLog:
    """One log line per EM iteration (``unit`` "iteration", or "epoch" for online
    EM), with a progress bar towards ``total`` between the lines."""

    def __init__(self, unit: str, total: int | None, enabled: bool) -> None:
        self.unit = unit
        self.total = total
        self.bar = Progress("fit", enabled)

    def __call__(self, iteration: int, mean_loglik: float, change: float, seconds: float) -> None:
        self.bar.close()
        change_text = "" if math.isnan(change) else f"  change {change:+.3e}"
        logger.info(
            f"{self.unit} {iteration:4d}  mean log-likelihood {mean_loglik:.6f}"
            f"{change_text}  {seconds:.2f} s"
        )
        if self.total:
            self.bar(iteration, self.total)

    def close(self) -> None:
        self.bar.close()


def quiet(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj.get("quiet"))


def step_reporter(as_json: bool) -> Callable[[str, dict[str, Any]], None]:
    """What to do when a part of a job (a pipeline step) is done: log it, and print
    its summary unless the whole job's summary will be one JSON document."""

    def report(label: str, summary: dict[str, Any]) -> None:
        logger.info("%s done", label)
        if not as_json:
            click.echo(f"# {label}")
            emit_summary(summary, False)

    return report


def emit_summary(summary: dict[str, Any], as_json: bool) -> None:
    """The job's result on stdout: one strict JSON document (non-finite numbers as
    ``null``), or ``key: value`` lines."""
    if as_json:
        click.echo(to_json(summary, sort_keys=True))
        return
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, dict):
            value = ", ".join(
                f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
            )
        click.echo(f"{key}: {value}")
