"""The benchmark of issue 2: `make bench` (`python -m tests.bench.run`); not collected by pytest."""
