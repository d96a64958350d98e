"""Operations: readiness, Prometheus metrics, structured logs and the ids that tie them together.

Nothing here imports the question-answering or ingestion code at module level: they
call in (``assistant.ops.metrics``, ``assistant.ops.context``), never the other way.
"""
