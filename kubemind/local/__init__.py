"""Running kubemind on one machine: the same components as processes, on embedded defaults."""
