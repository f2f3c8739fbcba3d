"""What the server keeps: the database models, migrations, quotas, the group-commit
writer, retention and backups."""
