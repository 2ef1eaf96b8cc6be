"""Every message schema and topic name of the VIP credit and loyalty system.

* ``contracts.topics``: topic names and their retention intent.
* ``contracts.envelope``: the envelope around every Kafka message, ``encode``/``decode``.
* ``contracts.<producer>.v1``: the payload models, one module per producer per major version.
* ``contracts.registry``: (type, schema_version) -> model class and topic.
* ``contracts.money``: decimal-string money, quantities and percentages.

A ``v1`` schema only ever gains optional fields; a breaking change is a new ``v2`` module
and a new topic.
"""

__version__ = "1.0.0"
