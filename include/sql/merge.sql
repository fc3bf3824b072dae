{#
  Bind parameters carry explicit casts: a driver that binds on the server (psycopg 3)
  then needs no type inference, and Redshift reads the same text.

  Merge the staged hour into the target, in the caller's single transaction.

  A key's row is replaced only when the incoming version wins: greater order_by,
  or equal order_by and a greater (object key, offset) than the loader row it
  meets (a row from the real-time path has no provenance and loses ties). The
  same version seen again is left alone, so a rerun rewrites nothing.

  A key with a tombstone (load.erase_keys) is 'erased': never inserted nor updated, and counted
  in neither realtime_quality nor the audit's findings; the ledger counts it as superseded. With
  erased_keys_accept_newer, a version with a greater order_by than the erased version merges as
  usual (a key erased before any version was loaded has no erased version and stays erased).

  With a staging table of whole rows (stages_rows) the winners are inserted from it;
  otherwise the caller sends them after this template (Dialect.insert_winners).

  "Unchanged" means the same version: one row, with the same order_by and the same
  provenance. A real-time writer that updates a row in place keeps its provenance, so an
  older order_by under the loader's provenance is stale and is replaced.

  The plan also records what the audit reports: how many rows the key had in the
  target (copies), whether the target's version was older (stale), and whether the
  key is new to the loader's account of the hour (first_seen: its winning object is not
  yet in the hour's ledger, and no row of the key carries provenance from one that is) or
  already had its winning version loaded (winner_loaded: its winning object is in the ledger).
  A key's first merge is where what the real-time writer did before the load can be seen;
  with realtime_writer, that is recorded in realtime_quality before any row changes.
  Without write_ledger (an audit that re-read nothing) the ledger keeps the load's counts; with
  delta (a late sweep) only the manifest's objects' ledger rows are written (see below).

  The ledger and load_hours of the hour are replaced only when they did not come from a
  later listing of the hour than this manifest's (listed_at): an ingest's merge cleared after
  an audit re-extracted the hour with a late object still merges its rows above (the winner
  rule keeps the newer versions), but leaves the newer ledger as it is. A NULL listed_at in
  load_hours (written before the column existed) is older than any listing; a manifest without
  one is older than any recorded listing.
#}
{# The manifest's objects as ledger rows, with what the plan did to each object's rows (both ledger writes below). #}
{% macro insert_ledger_rows() %}
INSERT INTO {{ (loader_schema, "ledger") | qualified }} (
    stream, hour, object_key, etag, size_bytes, compression, status, message,
    records_raw, records_valid, records_quarantined, records_duplicate,
    records_inserted, records_updated, records_unchanged, records_superseded,
    quarantine_key, run_id, loaded_at
)
SELECT
    CAST(%(stream)s AS varchar(64)), CAST(%(hour)s AS timestamp), o.object_key, o.etag, o.size_bytes, o.compression, o.status, o.message,
    o.records_raw, o.records_valid, o.records_quarantined, o.records_duplicate,
    COALESCE(a.inserted, 0), COALESCE(a.updated, 0), COALESCE(a.unchanged, 0), COALESCE(a.superseded, 0),
    o.quarantine_key, CAST(%(run_id)s AS varchar(256)), CAST(%(loaded_at)s AS timestamp)
FROM {{ objects | ident }} o
LEFT JOIN (
    SELECT
        "_firehose_object",
        SUM(CASE WHEN action = 'insert' THEN 1 ELSE 0 END) AS inserted,
        SUM(CASE WHEN action = 'update' THEN 1 ELSE 0 END) AS updated,
        SUM(CASE WHEN action = 'unchanged' THEN 1 ELSE 0 END) AS unchanged,
        SUM(CASE WHEN action IN ('superseded', 'erased') THEN 1 ELSE 0 END) AS superseded
    FROM {{ plan | ident }}
    GROUP BY "_firehose_object"
) a ON a."_firehose_object" = o.object_key
{% endmacro %}
{# The hour's load_hours row, in the order hour_totals and the rest of the SELECT give it (both load_hours writes below). #}
{% macro insert_load_hours() %}
INSERT INTO {{ (loader_schema, "load_hours") | qualified }} (
    stream, hour, status, objects, objects_unreadable, objects_gone, error_objects,
    records_raw, records_valid, records_quarantined, records_duplicate,
    records_inserted, records_updated, records_unchanged, records_superseded,
    stage_key, run_id, loaded_at, listed_at, stage_columns
)
{%- endmacro %}
{# The hour's load_hours counts, summed over its ledger rows (both load_hours writes below). #}
{% macro hour_totals() %}
    CASE
        WHEN COUNT(*) = 0 THEN 'empty'
        WHEN SUM(CASE WHEN status IN ('unreadable', 'partial') THEN 1 ELSE 0 END) > 0 THEN 'partial'
        ELSE 'loaded'
    END,
    COUNT(*),
    COALESCE(SUM(CASE WHEN status = 'unreadable' THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN status = 'gone' THEN 1 ELSE 0 END), 0),
    CAST(%(error_objects)s AS bigint),
    COALESCE(SUM(records_raw), 0),
    COALESCE(SUM(records_valid), 0),
    COALESCE(SUM(records_quarantined), 0),
    COALESCE(SUM(records_duplicate), 0),
    COALESCE(SUM(records_inserted), 0),
    COALESCE(SUM(records_updated), 0),
    COALESCE(SUM(records_unchanged), 0),
    COALESCE(SUM(records_superseded), 0),
{% endmacro %}
{% macro same_key(left, right) %}{% for column in key %}{{ left }}.{{ column | ident }} = {{ right }}.{{ column | ident }}{{ " AND " if not loop.last }}{% endfor %}{% endmacro %}
{# Qualified where a joined table could have a column of the same name (the ledger's object_key). #}
{% set target_key_list %}{% for column in key %}t.{{ column | ident }}{{ ", " if not loop.last }}{% endfor %}{% endset %}
{% set order = order_by | ident %}
{# A text order_by compares as the deduplication compares it (by code point): order_collation is the dialect's (PostgreSQL: COLLATE "C"). #}
{% set hour_ledger_objects %}SELECT object_key FROM {{ (loader_schema, "ledger") | qualified }} WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp){% endset %}

{#
  refill: the hour was last loaded from a stage with other columns or types than this one (a
  column added, a scale changed), or before load_hours recorded them (a fresh extract only).
  Its rows then hold other values than the stage even where the version is the same, so the
  same version is rewritten ('update') instead of left 'unchanged': a rerun or backfill fills
  a new column over older hours. An audit that reuses the loaded stage never refills.
#}
{% set refill_hour %}
SELECT COUNT(*) AS refill FROM {{ (loader_schema, "load_hours") | qualified }} h
WHERE h.stream = CAST(%(stream)s AS varchar(64)) AND h.hour = CAST(%(hour)s AS timestamp)
  AND ({% if write_ledger %}h.stage_columns IS NULL OR {% endif %}h.stage_columns <> CAST(%(stage_columns)s AS varchar(65535)))
{% endset %}

{#
  With plan_only (an audit's first look at an hour whose ledger matches S3) the plan alone is
  built, without the lock: load.audit_unchanged_without_lock then records the findings if the
  plan changes nothing, and only otherwise does the audit take the lock and merge.
#}
{% if not plan_only %}
{{ lock_statement }};
{% endif %}

CREATE TEMPORARY TABLE {{ plan | ident }} AS
SELECT
{% for column in key %}
    s.{{ column | ident }},
{% endfor %}
    s."_firehose_object",
    s."_firehose_offset",
    CASE
        WHEN e.{{ key[0] | ident }} IS NOT NULL{% if erased_keys_accept_newer %} AND (e."_firehose_erased_version" IS NULL OR s.{{ order }}{{ order_collation }} <= e."_firehose_erased_version"){% endif %} THEN 'erased'
        WHEN c.copies IS NULL THEN 'insert'
        WHEN c.copies = 1 AND c."_firehose_object" = s."_firehose_object" AND c."_firehose_offset" = s."_firehose_offset"
            AND c.{{ order }} = s.{{ order }} AND r.refill = 0 THEN 'unchanged'
        WHEN c.{{ order }} IS NULL OR s.{{ order }}{{ order_collation }} > c.{{ order }} THEN 'update'
        WHEN s.{{ order }} = c.{{ order }} AND (
            c."_firehose_object" IS NULL
            OR s."_firehose_object" > c."_firehose_object"
            OR (s."_firehose_object" = c."_firehose_object" AND s."_firehose_offset" >= c."_firehose_offset")
        ) THEN 'update'
        ELSE 'superseded'
    END AS action,
    COALESCE(c.copies, 0) AS copies,
    CASE WHEN c.copies IS NOT NULL AND (c.{{ order }} IS NULL OR s.{{ order }}{{ order_collation }} > c.{{ order }}) THEN 1 ELSE 0 END AS stale,
    CASE WHEN l.object_key IS NULL AND COALESCE(c.reconciled, 0) = 0 THEN 1 ELSE 0 END AS first_seen,
    CASE WHEN l.object_key IS NULL THEN 0 ELSE 1 END AS winner_loaded
FROM {{ staging | ident }} s
CROSS JOIN ({{ refill_hour }}) r
LEFT JOIN {{ tombstones | qualified }} e ON {{ same_key("e", "s") }}
LEFT JOIN ({{ hour_ledger_objects }}) l ON l.object_key = s."_firehose_object"
LEFT JOIN (
    SELECT ranked.*
    FROM (
        SELECT
{% for column in key %}
            t.{{ column | ident }},
{% endfor %}
            t.{{ order }},
            t."_firehose_object",
            t."_firehose_offset",
            COUNT(*) OVER (PARTITION BY {{ target_key_list }}) AS copies,
            MAX(CASE WHEN tl.object_key IS NULL THEN 0 ELSE 1 END) OVER (PARTITION BY {{ target_key_list }}) AS reconciled,
            ROW_NUMBER() OVER (
                PARTITION BY {{ target_key_list }}
                ORDER BY t.{{ order }}{{ order_collation }} DESC NULLS LAST, t."_firehose_object" DESC NULLS LAST, t."_firehose_offset" DESC NULLS LAST
            ) AS position
        FROM {{ target | qualified }} t
        LEFT JOIN ({{ hour_ledger_objects }}) tl ON tl.object_key = t."_firehose_object"
        WHERE EXISTS (SELECT 1 FROM {{ staging | ident }} x WHERE {{ same_key("x", "t") }})
    ) ranked
    WHERE ranked.position = 1
) c ON {{ same_key("c", "s") }};
{% if not plan_only %}

{% if realtime_writer %}
{% set first_merge %}
    SELECT
        COUNT(*) AS new_keys,
        COALESCE(SUM(CASE WHEN action = 'insert' THEN 1 ELSE 0 END), 0) AS new_missing,
        COALESCE(SUM(CASE WHEN copies > 1 THEN 1 ELSE 0 END), 0) AS new_duplicate,
        COALESCE(SUM(stale), 0) AS new_stale
    FROM {{ plan | ident }}
    WHERE first_seen = 1 AND action <> 'erased'
{% endset %}
UPDATE {{ (loader_schema, "realtime_quality") | qualified }}
SET s3_keys = s3_keys + n.new_keys,
    missing_keys = missing_keys + n.new_missing,
    duplicate_keys = duplicate_keys + n.new_duplicate,
    stale_keys = stale_keys + n.new_stale,
    drop_rate = CAST(missing_keys + n.new_missing AS double precision) / (s3_keys + n.new_keys),
    last_measured_at = CAST(%(loaded_at)s AS timestamp)
FROM ({{ first_merge }}) n
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp) AND n.new_keys > 0;

INSERT INTO {{ (loader_schema, "realtime_quality") | qualified }} (
    stream, hour, s3_keys, missing_keys, duplicate_keys, stale_keys, drop_rate,
    measured_at, run_id, measured_by, last_measured_at
)
SELECT
    CAST(%(stream)s AS varchar(64)), CAST(%(hour)s AS timestamp), n.new_keys, n.new_missing, n.new_duplicate, n.new_stale,
    CAST(n.new_missing AS double precision) / n.new_keys,
    CAST(%(loaded_at)s AS timestamp), CAST(%(run_id)s AS varchar(256)), CAST(%(measured_by)s AS varchar(16)),
    CAST(%(loaded_at)s AS timestamp)
FROM ({{ first_merge }}) n
WHERE n.new_keys > 0 AND NOT EXISTS (
    SELECT 1 FROM {{ (loader_schema, "realtime_quality") | qualified }} q
    WHERE q.stream = CAST(%(stream)s AS varchar(64)) AND q.hour = CAST(%(hour)s AS timestamp)
);
{% endif %}

{# Each object version's first commit, for freshness (landing -> committed); the lock is held, so the clock is about the commit's. #}
INSERT INTO {{ (loader_schema, "object_commits") | qualified }} (
    stream, hour, object_key, etag, landed_at, committed_at, run_id, committed_by
)
SELECT
    CAST(%(stream)s AS varchar(64)), CAST(%(hour)s AS timestamp), o.object_key, o.etag, o.landed_at,
    {{ clock }}, CAST(%(run_id)s AS varchar(256)), CAST(%(measured_by)s AS varchar(16))
FROM {{ objects | ident }} o
WHERE NOT EXISTS (
    SELECT 1 FROM {{ (loader_schema, "object_commits") | qualified }} c
    WHERE c.stream = CAST(%(stream)s AS varchar(64)) AND c.object_key = o.object_key AND c.etag = o.etag
);

DELETE FROM {{ target | qualified }}
USING {{ plan | ident }} p
WHERE {{ same_key(target | qualified, "p") }} AND p.action = 'update';

{% if stages_rows %}
{# By name: the columns the stage has (a column it lacks is NULL, one the stream no longer declares stays out). #}
INSERT INTO {{ target | qualified }} ({% for column in insert_columns %}{{ column.name | ident }}, {% endfor %}"_firehose_object", "_firehose_offset")
SELECT {% for column in insert_columns %}{{ column.insert_expression }}, {% endfor %}s."_firehose_object", s."_firehose_offset"
FROM {{ staging | ident }} s
JOIN {{ plan | ident }} p ON {{ same_key("p", "s") }}
WHERE p.action IN ('insert', 'update');
{% endif %}
{# Otherwise the staging table holds only the plan's columns: the dialect COPYs the winners (insert_winners). #}

{% if delta %}
{#
  A late sweep's delta: the manifest holds only the hour's new or changed objects. Their ledger
  rows are added (replacing only rows of the same object keys), the rest of the hour's ledger
  stays, and load_hours is recomputed from the whole ledger of the hour. Its stage_key is NULL:
  no one stage holds the hour any more, so an audit of the hour extracts it again; its
  stage_columns are the delta's (the stream's columns now), so that extract refills nothing
  unless the columns changed since.
#}
{#
  An object already in the ledger at the same ETag keeps its ledger row: a delta that listed the
  hour before another merge loaded the object (a micro-batch beside the hourly pass or an audit)
  merges its rows again (unchanged) but does not rewrite the account, and when no object is new
  or changed, load_hours stays as it is (with the stage of a whole-hour load, if it had one).
#}
{% set this_hour %}stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp){% endset %}
{# A row marked gone does not count: an object that is back is new to the account again. #}
{% set in_ledger %}SELECT 1 FROM {{ (loader_schema, "ledger") | qualified }} l WHERE l.stream = CAST(%(stream)s AS varchar(64)) AND l.object_key = o.object_key AND l.status <> 'gone'{% endset %}
DELETE FROM {{ (loader_schema, "load_hours") | qualified }}
WHERE {{ this_hour }}
  AND EXISTS (SELECT 1 FROM {{ objects | ident }} o WHERE NOT EXISTS ({{ in_ledger }} AND l.etag = o.etag));

DELETE FROM {{ (loader_schema, "ledger") | qualified }}
USING {{ objects | ident }} o
WHERE {{ (loader_schema, "ledger") | qualified }}.stream = CAST(%(stream)s AS varchar(64))
  AND {{ (loader_schema, "ledger") | qualified }}.object_key = o.object_key
  AND ({{ (loader_schema, "ledger") | qualified }}.etag <> o.etag OR {{ (loader_schema, "ledger") | qualified }}.status = 'gone');

{{ insert_ledger_rows() }}
WHERE NOT EXISTS ({{ in_ledger }});

{{ insert_load_hours() }}
SELECT * FROM (
SELECT
    CAST(%(stream)s AS varchar(64)), CAST(%(hour)s AS timestamp),
{{ hour_totals() }}
    CAST(NULL AS varchar(1024)), CAST(%(run_id)s AS varchar(256)), CAST(%(loaded_at)s AS timestamp),
    CAST(%(listed_at)s AS timestamp), CAST(%(stage_columns)s AS varchar(65535))
FROM {{ (loader_schema, "ledger") | qualified }}
WHERE {{ this_hour }}
) summary
WHERE NOT EXISTS (
    SELECT 1 FROM {{ (loader_schema, "load_hours") | qualified }} kept
    WHERE kept.stream = CAST(%(stream)s AS varchar(64)) AND kept.hour = CAST(%(hour)s AS timestamp)
);
{% endif %}

{% if write_ledger and not delta %}
{% set manifest_listed_at = "CAST(%(listed_at)s AS timestamp)" %}
{% set this_hour %}stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp){% endset %}
{# load_hours says the hour's ledger came from a later listing than this manifest's. #}
{% macro listed_later(newer_objects="") %}EXISTS (
    SELECT 1 FROM {{ (loader_schema, "load_hours") | qualified }} newer
    WHERE newer.{{ this_hour | replace(" AND hour", " AND newer.hour") }}
      AND newer.listed_at IS NOT NULL
      AND ({{ manifest_listed_at }} IS NULL OR newer.listed_at > {{ manifest_listed_at }}){{ newer_objects }}
){% endmacro %}
{#
  The hour's ledger accounts for other objects (or ETags) than the manifest: a later listing that
  saw the same objects is no newer in what it accounts for, and is replaced as before.
#}
{% set ledger_differs %}(
    EXISTS (
        SELECT 1 FROM {{ (loader_schema, "ledger") | qualified }} l
        WHERE l.{{ this_hour | replace(" AND hour", " AND l.hour") }}
          AND NOT EXISTS (SELECT 1 FROM {{ objects | ident }} o WHERE o.object_key = l.object_key AND o.etag = l.etag)
    )
    OR EXISTS (
        SELECT 1 FROM {{ objects | ident }} o
        WHERE NOT EXISTS (
            SELECT 1 FROM {{ (loader_schema, "ledger") | qualified }} l
            WHERE l.{{ this_hour | replace(" AND hour", " AND l.hour") }}
              AND l.object_key = o.object_key AND l.etag = o.etag
        )
    )
){% endset %}
{% set ledger_is_newer %}({{ listed_later() }} AND {{ ledger_differs }}){% endset %}
{#
  Objects of the ledger that this listing no longer holds (deleted, or expired under a lifecycle
  rule) stay in the hour's account, marked gone: their rows are still in the table. A listing that
  lacks objects not yet marked reaches this merge only when the run forced it
  (load.check_listing_keeps_the_ledger refuses it otherwise).
#}
UPDATE {{ (loader_schema, "ledger") | qualified }}
SET status = 'gone', message = CAST(%(gone_message)s AS varchar(1024))
WHERE {{ this_hour }}
  AND status <> 'gone'
  AND NOT EXISTS (SELECT 1 FROM {{ objects | ident }} o WHERE o.object_key = {{ (loader_schema, "ledger") | qualified }}.object_key)
  AND NOT {{ ledger_is_newer }};

DELETE FROM {{ (loader_schema, "ledger") | qualified }}
WHERE {{ this_hour }}
  AND (status <> 'gone' OR object_key IN (SELECT object_key FROM {{ objects | ident }}))
  AND NOT {{ ledger_is_newer }};

{{ insert_ledger_rows() }}
{#
  After the DELETE above the hour has ledger rows other than gone ones only when they were kept
  as newer (or, kept and empty, when load_hours counts no objects for that later listing).
#}
WHERE NOT EXISTS (
    SELECT 1 FROM {{ (loader_schema, "ledger") | qualified }} kept
    WHERE kept.{{ this_hour | replace(" AND hour", " AND kept.hour") }}
      AND (kept.status <> 'gone' OR kept.object_key IN (SELECT object_key FROM {{ objects | ident }}))
)
  AND NOT {{ listed_later(" AND newer.objects = 0") }};

{# The row is kept only with its newer ledger (the ledger now differs from the manifest only then); the INSERT below then finds it and adds nothing. #}
DELETE FROM {{ (loader_schema, "load_hours") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
  AND NOT {{ ledger_is_newer }};

{{ insert_load_hours() }}
SELECT * FROM (
SELECT
    CAST(%(stream)s AS varchar(64)), CAST(%(hour)s AS timestamp),
{{ hour_totals() }}
    CAST(%(stage_key)s AS varchar(1024)), CAST(%(run_id)s AS varchar(256)), CAST(%(loaded_at)s AS timestamp),
    {{ manifest_listed_at }}, CAST(%(stage_columns)s AS varchar(65535))
FROM {{ (loader_schema, "ledger") | qualified }}
WHERE stream = CAST(%(stream)s AS varchar(64)) AND hour = CAST(%(hour)s AS timestamp)
) summary
WHERE NOT EXISTS (
    SELECT 1 FROM {{ (loader_schema, "load_hours") | qualified }} kept
    WHERE kept.stream = CAST(%(stream)s AS varchar(64)) AND kept.hour = CAST(%(hour)s AS timestamp)
);
{% endif %}
{% endif %}
