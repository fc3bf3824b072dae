{#
  Load the run's staged Parquet object into the session-local staging table.
  Parquet columns are matched by position: the stage and the staging table both list
  the stream's columns in declaration order, then _firehose_object, _firehose_offset.
  The source and the role cannot be bind parameters; the literal filter refuses anything
  that could end the literal, and the dialect has already checked their shape.
  COPY reads every object whose key starts with the source, so the dialect counts the
  loaded rows afterwards (staged_rows.sql).
#}
COPY {{ staging | ident }}
FROM {{ stage_uri | literal }}
IAM_ROLE {{ "default" if iam_role == "default" else iam_role | literal }}
FORMAT AS PARQUET
