"""``python -m bench``: run the benchmark (options: ``python -m bench --help``)."""

from bench.harness.cli import main

raise SystemExit(main())
