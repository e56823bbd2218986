"""Log hygiene shared by the entry points."""

import logging

_WARNING = 30


class _QuietLibraries(logging.Filter):
  """Drops INFO records of chatty libraries (orbax logs every checkpoint step at INFO)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= _WARNING or "orbax" not in record.pathname


def quiet_library_logs() -> None:
  """Installs the filter on every root handler (absl's included); call once in main()."""
  for handler in logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())
