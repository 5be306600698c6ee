"""Orchestration: the Airflow DAGs (dags/) and what they share (factory, job artifact, env)."""
