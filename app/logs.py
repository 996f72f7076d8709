"""Logging as JSON lines: one object per record, with its context fields (conversation_id, run_id, ...)."""

from __future__ import annotations

import logging
import sys

import msgspec

_log_encoder = msgspec.json.Encoder(enc_hook=str)  # anything unusual in a record's context is logged as str


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the record's context fields (conversation_id, ...)."""

    _skip = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _log_encoder.encode(entry).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request access lines and SAQ's per-job chatter drown the structured records.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("saq").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
