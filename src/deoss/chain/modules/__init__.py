"""Chain modules, one file each: their records, calls, queries and block hooks."""
