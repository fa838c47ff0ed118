"""Running trials: worker processes, their launch across cores and GPUs, and the SQL storage."""
