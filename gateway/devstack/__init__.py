"""The embedded local stack behind `make run`, and the process helpers tests and benchmarks share.

Nothing here is imported by the gateway's data path; it only starts real local components (Tansu broker,
development identity provider) for newcomers, tests and the bench suite.
"""
