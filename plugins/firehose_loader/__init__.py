"""firehose-loader: Kinesis Firehose output in S3 to deduplicated, audited warehouse tables (the library the DAGs call)."""
