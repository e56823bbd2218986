"""Test-wide setup: 8 simulated CPU devices so sharding tests run real multi-device meshes."""

import os

# Must happen before jax is imported anywhere in the test session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "devices(n): needs n devices; skipped with the reason on a backend with fewer "
      "(e.g. `JAX_PLATFORMS=cuda` on one GPU)")


def pytest_runtest_setup(item):
  marker = item.get_closest_marker("devices")
  if marker is None:
    return
  import jax  # After the XLA_FLAGS above.
  needed, have = int(marker.args[0]), jax.device_count()
  if have < needed:
    pytest.skip(f"needs {needed} devices; the {jax.default_backend()} backend has {have}")
