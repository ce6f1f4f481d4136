"""kubemind core: settings, errors, v2 codecs, protocol servers, telemetry, CLI."""
