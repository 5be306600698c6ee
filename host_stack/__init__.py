"""Starts and stops the local stack as plain processes (host mode): LocalStack, Spark, Airflow."""
