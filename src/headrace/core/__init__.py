"""The declarative model: pipelines, nodes, partitions. Pure and I/O-free."""
