"""OrgGuard's benchmarks: `make bench` (or `python -m bench [name]`) prints tables with the command that made them."""
