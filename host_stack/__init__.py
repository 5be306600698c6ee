"""Starts and stops the local stack as plain processes (host mode): LocalStack, Spark, Airflow.

The stack is data: `plans.py` resolves the settings once into a `Plan` (`plan.py`) of services,
each with its command, environment, dependencies, readiness check and lifecycle (one-shot or
supervised); `runner.py` is the one loop that starts any plan and waits for it; `processes.py`
records, finds and stops the processes, with or without their records. `stack.py` ties them to
the settings and config; `__main__.py` is the command line (`nox -s up`, `down`, `pipeline`).
"""
