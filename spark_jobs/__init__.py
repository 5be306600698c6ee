"""PySpark jobs of the pipeline. Each job is a thin main() around pure DataFrame functions."""
