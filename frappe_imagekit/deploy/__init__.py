"""The deploy wing: everything `imagekit deploy`, `unlock` and `migrate-report` run.

`sequence` is the one entry point (lock, render, check, backup, down/up, migrate, health, record);
the other modules are its steps and are reached only through it, except `migrate_parse` and
`migrate_report`, which `imagekit migrate-report` also uses on a transcript the user saved.
"""
