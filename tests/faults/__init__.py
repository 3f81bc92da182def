"""Fault tests: fuzzing and broken inputs (issue 7)."""
