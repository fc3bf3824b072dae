{# The staged rows the merge plan does not insert (unchanged or superseded), by provenance. #}
SELECT "_firehose_object", "_firehose_offset"
FROM {{ plan | ident }}
WHERE action NOT IN ('insert', 'update')
