{#
  For the task's session. Redshift has no lock_timeout: a LOCK waits inside its statement, so
  statement_timeout_minutes bounds the wait for the lock as well as every statement.
#}
SET statement_timeout TO {{ statement_timeout_ms | int }}
