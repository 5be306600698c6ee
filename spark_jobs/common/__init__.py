"""Modules shared by the Spark jobs; shipped to Spark with --py-files."""
