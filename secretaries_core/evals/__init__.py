"""Release gates: eval suites run against a version, checks, and the judge."""
