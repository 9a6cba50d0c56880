"""Common library of the newswatch services: config, Kafka contract, Kafka I/O, observability.

Everything the three services must agree on lives here, so that the contract between
them is one piece of code rather than three copies that can drift apart.
"""
