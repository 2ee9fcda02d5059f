"""Building and running generated C: host builds through cffi (stands apart from the rest)."""
