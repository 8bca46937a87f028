"""mogsgd's benchmarks: every performance goal measured against its anchors in one run.

Run ``python -m benchmarks`` (or ``python -m benchmarks --quick``) from the repository
root; see ``benchmarks/README.md``.
"""
