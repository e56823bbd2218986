"""Making a directory refuse new files, for the checkpoint-failure tests (also as root)."""

import os
import subprocess


def make_unwritable(path: str) -> bool:
  """Makes directory `path` refuse new files (chmod; as root, which chmod does not stop, the
  immutable attribute); returns whether that worked here."""
  os.chmod(path, 0o555)
  probe = os.path.join(path, ".probe")
  try:
    open(probe, "w").close()
  except OSError:
    return True
  os.remove(probe)
  os.chmod(path, 0o755)
  try:
    return subprocess.run(["chattr", "+i", path], capture_output=True).returncode == 0
  except FileNotFoundError:  # No chattr.
    return False


def make_writable(path: str) -> None:
  """Undoes `make_unwritable`."""
  try:
    subprocess.run(["chattr", "-i", path], capture_output=True)
  except FileNotFoundError:
    pass
  os.chmod(path, 0o755)
