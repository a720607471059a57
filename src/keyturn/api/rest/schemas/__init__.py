"""Bodies of the REST routers: ``schemas/<router>.py`` holds those of ``rest/<router>.py``;
``common.py`` the ones several routers share (and the user shape GraphQL reuses)."""
