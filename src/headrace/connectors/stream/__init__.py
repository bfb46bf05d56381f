"""Stream brokers for the streaming engine.

The contract is in :mod:`.base`, message decoding in :mod:`.decode`; :mod:`.log` (the embedded
log), :mod:`.kafka`, :mod:`.nats` and :mod:`.redis_streams` implement it, and :mod:`.factory`
picks one by URL.
"""
