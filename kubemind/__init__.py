"""kubemind core: settings, errors, v2 codecs, protocol servers, telemetry, CLI."""

# The one place the version lives: setup.py reads this line, `kubemind --version` prints it.
__version__ = "0.1.0"
