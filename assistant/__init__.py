"""The private RAG assistant: Django project package and the question-answering side."""

from assistant.celery import app as celery_app

__all__ = ["celery_app"]
