"""The database: schema, migrations and the SQL of items, runs, the ledger, subscribers (and who
receives digests: `subscribers`) and keys."""
