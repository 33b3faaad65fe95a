"""The metrics domain: indicators, their clocks and sums, pure functions over plain data."""
