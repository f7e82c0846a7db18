"""Streamgate's benchmark suite: end-to-end scenarios (`bench.e2e`) and microbenchmarks (`bench.micro`).

Run it with `python -m bench.run --quick|--full`; results land in `bench/results/`. A benchmark reports
numbers and compares them side by side with a direct broker connection measured in the same run; it never
fails a build on speed (tests under `tests/bench/` check only that the bench code measures correctly).
"""
