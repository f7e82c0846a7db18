"""End-to-end scenarios: real confluent-kafka clients against a direct broker, Streamgate and a peer proxy.

The harness (`bench.run`) starts the targets, runs every scenario against each target in alternation and
hands the raw numbers to `bench.report`. Client workloads run in their own processes (`bench.e2e.clients`)
so the harness's own Python loop never competes with the measured client for the GIL.
"""
