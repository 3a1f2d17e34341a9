"""Data contracts: the privacy column policy, Pandera models and GX suites."""
