"""The Keyturn benchmark harness (``make bench``, ``make bench-quick``); see bench/README.md."""
