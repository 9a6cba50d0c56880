"""``newswatch demo``: the pipeline with a local feed server and an alert printer, no internet needed."""
