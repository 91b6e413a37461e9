"""Root conftest: pytester for the plugin's tests, and portable_rnn's pytest plugin when
the package is not installed (for example run from a checkout with PYTHONPATH, as
ci/gpu does); installed, its pytest11 entry point loads it."""

import importlib.metadata

pytest_plugins = ["pytester"]
if not any(ep.name == "portable_rnn" for ep in importlib.metadata.entry_points(group="pytest11")):
    pytest_plugins.append("portable_rnn.pytest_plugin")
