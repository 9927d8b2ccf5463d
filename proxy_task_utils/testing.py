"""Pytest fixtures for users of proxy_task_utils (a real fake-GCS server, a fake controller)."""
