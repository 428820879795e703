"""The deploy wing: everything `imagekit deploy`, `rollback`, `unlock` and `migrate-report` run.

`sequence` is the entry point of deploy (lock, render, check, backup, down/up, migrate, health,
record) and `rollback` of rollback, which reuses sequence's steps; the other modules are their
steps, except `migrate_parse` and `migrate_report`, which `imagekit migrate-report` also uses on
a transcript the user saved, and `record`, the deploy record that history reads.
"""
