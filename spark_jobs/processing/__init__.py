"""The processor's stages (spark_jobs/data_processor.py is the job that runs them), one module each:

extract   read one raw day and its manifest
validate  parse every line once and decide its fate (rules: the contract's checks as Columns;
          details: which check a failing line breaks, and where)
dedupe    one line per order_id
tables    the published tables from the kept lines
report    the quality report and its reconciliation
publish   replace a day's partitions atomically; read what was published
"""
