{#
  Load the run's staged Parquet files into the session-local staging table (or a split hour's
  parts table).
  A Parquet COPY fills the table's columns by position, and the table and the file must
  have as many columns (AWS: "COPY from columnar data formats"; a column list does not map
  Parquet columns by name): so the staging table is made from the stage's own recorded
  columns (load.template_context), in the file's order, then _firehose_object and
  _firehose_offset, and the merge's INSERT reads it by name into the target.
  The source is a manifest (AWS: "Using a manifest to specify data files"): it lists exactly the
  stage's files, each once and mandatory, with the content_length a Parquet COPY needs, so no
  other object under the same key prefix is loaded and a missing file fails the COPY.
  The source and the role cannot be bind parameters; the literal filter refuses anything
  that could end the literal, and the dialect has already checked their shape.
#}
COPY {{ staging | ident }}
FROM {{ manifest_uri | literal }}
IAM_ROLE {{ "default" if iam_role == "default" else iam_role | literal }}
FORMAT AS PARQUET
MANIFEST
