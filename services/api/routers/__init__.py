"""The API's routers, one module per resource; each is built from the ``ApiDeps`` it serves."""
