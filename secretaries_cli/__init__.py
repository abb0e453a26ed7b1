"""The `secretaries` admin CLI: parse, call `secretaries_core`, print."""
