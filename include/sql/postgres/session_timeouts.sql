{#
  For the task's session: a lock wait longer than lock_timeout_seconds cancels the transaction
  (retried: warehouse.transactions), so a merge queued behind an idle-in-transaction writer does
  not hold up the writers queued behind it for ever; a statement longer than
  statement_timeout_minutes fails the task's try.
#}
SET lock_timeout TO {{ lock_timeout_ms | int }};
SET statement_timeout TO {{ statement_timeout_ms | int }}
