"""Speed benchmarks (not tests): python -m ddrl.benchmarks.<name> --help."""
