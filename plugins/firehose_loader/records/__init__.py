"""Bytes to validated, deduplicated Arrow rows and their account: decode, coerce, validate, dedupe, stage. No I/O."""
