{#
  Data API mode: a list of rows (the hour's objects, its schema drift) that a batch cannot carry
  as parameters, COPYed from the JSON lines the connection wrote to S3 (warehouse.data_api).
  The JSON keys are the column names ('auto'); the source names one object by its digest, so no
  other key starts with it. TRUNCATECOLUMNS: a text longer in bytes than its column is cut, as the
  CAST of the INSERT it stands for would cut it.
#}
COPY {{ rows_table | qualified }} ({% for column in rows_columns %}{{ column | ident }}{{ ", " if not loop.last }}{% endfor %})
FROM {{ rows_source | literal }}
IAM_ROLE {{ "default" if iam_role == "default" else iam_role | literal }}
FORMAT AS JSON 'auto'
TIMEFORMAT 'auto'
TRUNCATECOLUMNS
