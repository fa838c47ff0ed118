"""Reading a study: the study file, its validated spec, and the search space."""
